"""PCGrad: project each task gradient off the gradients it conflicts with.

Yu, Kumar, Gupta, Levine, Hausman and Finn, "Gradient Surgery for Multi-Task Learning",
NeurIPS 2020, https://arxiv.org/abs/2001.06782 (Algorithm 1). The math is torchjd's
:class:`torchjd.aggregation.PCGrad`; the projection order is random, so under DDP the ranks
use rank 0's update.
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class PCGrad(JacobianAggregator):
    """Gradient surgery (Algorithm 1 of Yu et al., 2020), a weighted sum of the task gradients.

    Args:
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    stochastic = True

    def __init__(self, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import PCGrad

        return PCGrad()


__all__ = ["PCGrad"]
