"""ConFIG: the conflict-free update with equal cosine to every task gradient.

Liu, Chu, Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks", ICLR 2025, https://arxiv.org/abs/2408.11104 (Eq. 2-3). torchjd's
:class:`torchjd.aggregation.ConFIG`. The update is not a weighted sum of the task gradients
(its length is a sum of projections), so ``wrt="representation"`` and ``update_every>1``
are refused. (The module is not called ``config`` to avoid a clash with configuration.)
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class ConFIG(JacobianAggregator):
    """Conflict-free update (Liu et al., 2025).

    Args:
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    weighted = False
    gramian_only = False

    def __init__(self, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import ConFIG

        return ConFIG()


__all__ = ["ConFIG"]
