"""The optimizer factory type shared by the restoration and the multi-task modules.

Configs give optimizers as partials (Hydra ``_partial_: true`` or ``functools.partial``) that
the module calls with the parameters it optimizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
