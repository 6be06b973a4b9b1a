"""CAGrad: the update that maximizes the worst local improvement near the mean gradient.

Liu, Liu, Jin, Stone and Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
NeurIPS 2021, https://arxiv.org/abs/2110.14048 (Algorithm 1, ``c`` the radius scale; 0.4 in
the paper's NYUv2 and CityScapes runs). Solved by torchjd's
:class:`torchjd.aggregation.CAGrad` (cvxpy/Clarabel: extra ``torchjd[cagrad]``).
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class CAGrad(JacobianAggregator):
    """Conflict-averse gradient descent; ``c=0`` is the mean gradient.

    Args:
        c: radius of the ball around the mean gradient, relative to its norm.
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    extra = "cagrad"

    def __init__(self, c: float = 0.4, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        self.c = float(c)
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import CAGrad

        return CAGrad(c=self.c)


__all__ = ["CAGrad"]
