"""GradDrop: keep, per coordinate, the gradients of one sign, chosen by sign purity.

Chen, Ngiam, Huang, Luong, Kretzschmar, Chai and Anguelov, "Just Pick a Sign: Optimizing
Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020,
https://arxiv.org/abs/2010.06808 (Algorithm 1). ``wrt="parameters"`` (default): torchjd's
:class:`torchjd.aggregation.GradDrop` on the Jacobian of the shared parameters, one sign
purity per parameter. ``wrt="representation"``: as the paper and LibMTL apply it, on the
gradients of the backbone's output ``A`` (one backbone pass shared by every objective: a
:class:`~m3l.mtl.MultiHeadTask`): the purity of each feature is computed from
``sum_batch sign(A) * dL_t/dA``, one keep/drop mask per feature and objective is drawn and
applied to every sample, and the kept gradients are back-propagated through the backbone. Its update is not a weighted sum of the task gradients, so ``update_every>1`` is
refused; it is random, so under DDP with ``wrt="parameters"`` the ranks use rank 0's update
(on the representation each rank drops on its own samples).
"""

from __future__ import annotations

import torch
from torch import Tensor

from m3l.errors import M3LError
from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class GradDrop(JacobianAggregator):
    """Gradient sign dropout (Algorithm 1 of Chen et al., 2020).

    Args:
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
        leak: on the representation, the share of a dropped gradient that is kept (paper: 0).
    """

    weighted = False
    gramian_only = False
    representation_rule = True
    stochastic = True

    def __init__(self, wrt: Wrt = "parameters", update_every: int = 1, leak: float = 0.0) -> None:
        super().__init__(wrt=wrt, update_every=update_every)
        if not 0.0 <= float(leak) <= 1.0:
            raise M3LError(f"GradDrop: leak must be in [0, 1] (the share of a dropped gradient kept); got {leak!r}")
        self.leak = float(leak)

    def representation_gradient(self, per_sample: Tensor, representation: Tensor) -> Tensor:
        """Algorithm 1 on the representation ``A``: ``per_sample`` is ``[T, B, ...]``."""
        signed = (per_sample * representation.detach().sign().unsqueeze(0)).sum(1)  # [T, ...]
        purity = 0.5 * (1 + signed.sum(0) / (signed.abs().sum(0) + 1e-7))
        draw = torch.rand_like(purity)
        keep = ((purity > draw) & (signed > 0)) | ((purity < draw) & (signed < 0))
        mask = self.leak + (1 - self.leak) * keep.to(per_sample.dtype)
        return (per_sample * mask.unsqueeze(1)).sum(0)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import GradDrop

        return GradDrop()


__all__ = ["GradDrop"]
