"""All-in-one restoration: denoise, deblur and JPEG correction as three tasks, one trunk.

Each task has its own dataset of m3l's built-in photos with its own degradation.
Run: ``python examples/mtl/allinone.py``; CLI: ``python -m m3l.run.train model=mtl_allinone``.
"""

# %%
import logging

from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio

from m3l import mtl
from m3l.data.datasets import CleanImageDataset
from m3l.data.degradations import JPEG, GaussianBlur, GaussianNoise
from m3l.data.samples import sample_dir
from m3l.mtl.examples.allinone import RestorationHead, RestorationTrunk

logging.basicConfig(level=logging.INFO)


# %% One task per degradation
def restoration_task(name: str, degradation) -> mtl.Task:
    return mtl.Task(
        name,
        head=RestorationHead(in_channels=35, channels=3),
        criterion=nn.L1Loss(),
        train=CleanImageDataset(sample_dir("train"), degradation, patch_size=48, patches_per_image=8),
        val=CleanImageDataset(sample_dir("val"), degradation, train=False, eval_patch_size=96),
        metrics={"psnr": PeakSignalNoiseRatio(data_range=1.0)},
        batch_size=8,
    )


tasks = [
    restoration_task("denoise", GaussianNoise(sigma=25 / 255)),
    restoration_task("deblur", GaussianBlur(kernel_size=11, sigma_range=(0.5, 2.0))),
    restoration_task("jpeg", JPEG(quality_range=(10, 40))),
]

# %% Joint training with dynamic weight average; save trunk and heads separately
results = mtl.Trainer(RestorationTrunk(), tasks, max_epochs=3, root_dir="runs/mtl_allinone_example").launch(
    mtl.Joint(mtl.DynamicWeightAverage())
)
logging.info("PSNR per task %s", {k: round(v["psnr"], 2) for k, v in results.metrics.items()})
