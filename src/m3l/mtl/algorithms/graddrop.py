"""GradDrop: keep, per coordinate, the gradients of one sign, chosen by sign purity.

Chen, Ngiam, Huang, Luong, Kretzschmar, Chai and Anguelov, "Just Pick a Sign: Optimizing
Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020,
https://arxiv.org/abs/2010.06808 (Algorithm 1). torchjd's
:class:`torchjd.aggregation.GradDrop`, applied to the gradients of the shared parameters.
Its update is not a weighted sum of the task gradients, so ``wrt="representation"`` and
``update_every>1`` are refused; it is random, so under DDP the ranks use rank 0's update.
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class GradDrop(JacobianAggregator):
    """Gradient sign dropout (Algorithm 1 of Chen et al., 2020).

    Args:
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    weighted = False
    gramian_only = False
    stochastic = True

    def __init__(self, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import GradDrop

        return GradDrop()


__all__ = ["GradDrop"]
