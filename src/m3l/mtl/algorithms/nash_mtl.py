"""Nash-MTL: the task weights of the Nash bargaining solution, ``G w = 1 / w``.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik and Fetaya, "Multi-Task Learning as a
Bargaining Game", ICML 2022, https://arxiv.org/abs/2202.01017 (Algorithm 1). The paper
recomputes the weights every few steps to cut the cost (Sec. 5.3): ``update_every=k`` does
that and the steps in between cost one backward pass. Solved by torchjd's
:class:`torchjd.aggregation.NashMTL` (cvxpy/ECOS: extra ``torchjd[nash-mtl]``); stateful,
reset by :meth:`setup`.

Two additions around the solver: a task whose gradient is zero gets weight 0 (the bargaining
problem is solved on a Gramian made regular on that row; upstream returns NaN there), and the
``max_norm`` clipping of the update is done here, on the true Gramian, without a host sync.
"""

from __future__ import annotations

import torch

from torch import Tensor

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class NashMTL(JacobianAggregator):
    """Nash bargaining weights (Algorithm 1 of Navon et al., 2022).

    Args:
        max_norm: largest norm of the update (0 disables the clipping).
        optim_niter: iterations of the concave-convex procedure (Sec. 3.1).
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    extra = "nash-mtl"

    def __init__(
        self, max_norm: float = 1.0, optim_niter: int = 20, wrt: Wrt = "parameters", update_every: int = 1
    ) -> None:
        self.max_norm = float(max_norm)
        self.optim_niter = int(optim_niter)
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import NashMTL

        return NashMTL(n_tasks=num_objectives, max_norm=0.0, update_weights_every=1, optim_niter=self.optim_niter)

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        """Nash weights, 0 for zero-gradient tasks, scaled so ``||J^T w|| <= max_norm``."""
        diagonal = gramian.diagonal()
        zero = diagonal <= 1e-12 * diagonal.sum().clamp_min(1e-30)
        ridge = torch.where(zero, diagonal.sum().clamp_min(1e-12), torch.zeros_like(diagonal))
        weights = super().weights_from_gramian(gramian + torch.diag(ridge))
        weights = torch.where(zero, torch.zeros_like(weights), weights)
        if self.max_norm > 0:
            norm = (weights @ gramian @ weights).clamp_min(0).sqrt()
            weights = weights * (self.max_norm / norm.clamp_min(1e-12)).clamp(max=1.0)
        return self._remember(weights)

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """``w @ J`` with the weights of :meth:`weights_from_gramian`."""
        return self.weights_from_gramian(jacobian @ jacobian.T).to(jacobian.dtype) @ jacobian


__all__ = ["NashMTL"]
