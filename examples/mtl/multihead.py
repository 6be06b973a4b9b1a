"""A MultiHeadTask: one dataset whose samples carry two labels, two heads, one backbone pass.

Run: ``python examples/mtl/multihead.py``; CLI: ``python -m m3l.run.train model=mtl_multimnist_multihead``.
"""

# %%
import logging

from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from m3l import mtl
from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST

logging.basicConfig(level=logging.INFO)

# %% One dataset, samples (image, {"left": label, "right": label})
pairs = mtl.MultiHeadTask(
    "pairs",
    heads={"left": Classifier(), "right": Classifier()},
    criteria={"left": nn.CrossEntropyLoss(), "right": nn.CrossEntropyLoss()},
    train=MultiMNIST("train", 2000, target="both"),
    val=MultiMNIST("val", 400, target="both", seed=1),
    metrics={h: {"acc": MulticlassAccuracy(num_classes=10, average="micro")} for h in ("left", "right")},
    batch_size=64,
)

# %% Uncertainty weighting learns one log-variance per head
results = mtl.Trainer(LeNet(), [pairs], max_epochs=2, root_dir="runs/mtl_multihead_example").launch(
    mtl.Joint(mtl.UncertaintyWeighting())
)
logging.info("metrics %s", results.metrics)
