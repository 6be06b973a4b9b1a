"""The optimizer and scheduler factory types shared by the restoration and the multi-task
modules.

Configs give optimizers as partials (Hydra ``_partial_: true`` or ``functools.partial``) that
the module calls with the parameters it optimizes, and schedulers as partials it calls with the
optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
