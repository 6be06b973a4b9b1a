"""Aligned-MTL: align the principal components of the task gradients (condition number 1).

Senushkin, Patakin, Kuznetsov and Konushin, "Independent Component Alignment for Multi-Task
Learning", CVPR 2023, https://arxiv.org/abs/2305.19000 (Algorithm 1; ``scale_mode`` the
scale of the balanced gradients, "min" in the paper). Weights from torchjd's
:class:`torchjd.aggregation.AlignedMTL`.
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class AlignedMTL(JacobianAggregator):
    """Gradient alignment by the eigen-decomposition of the Gramian (Senushkin et al., 2023).

    Args:
        scale_mode: "min", "median" or "rmse": scale of the balanced gradients.
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    def __init__(self, scale_mode: str = "min", wrt: Wrt = "parameters", update_every: int = 1) -> None:
        self.scale_mode = str(scale_mode)
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import AlignedMTL

        return AlignedMTL(scale_mode=self.scale_mode)


__all__ = ["AlignedMTL"]
