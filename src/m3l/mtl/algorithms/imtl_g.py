"""IMTL-G: the update whose projections on every task gradient's direction are equal.

Liu, Li, Kuang, Xue, Chen, Yang, Liao and Zhang, "Towards Impartial Multi-task Learning",
ICLR 2021, https://openreview.net/forum?id=IMPnRXEWpvr (Sec. 3.2, the gradient part).
Weights from torchjd's :class:`torchjd.aggregation.IMTLG`.
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class IMTLG(JacobianAggregator):
    """Impartial gradient weights (IMTL-G of Liu et al., 2021).

    Args:
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    def __init__(self, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import IMTLG

        return IMTLG()


__all__ = ["IMTLG"]
