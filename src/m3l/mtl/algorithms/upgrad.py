"""UPGrad: average of each task gradient projected onto the dual cone of all of them.

Quinton and Rey, "Jacobian Descent for Multi-Objective Optimization", 2024,
https://arxiv.org/abs/2406.16232 (Sec. 3, the unconflicting projection of gradients).
torchjd's :class:`torchjd.aggregation.UPGrad` (quadprog: extra
``torchjd[quadprog-projector]``).
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class UPGrad(JacobianAggregator):
    """Unconflicting projection of gradients (Quinton and Rey, 2024).

    Args:
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    extra = "quadprog-projector"

    def __init__(self, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import UPGrad

        return UPGrad()


__all__ = ["UPGrad"]
