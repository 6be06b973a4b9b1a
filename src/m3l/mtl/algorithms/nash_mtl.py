"""Nash-MTL: the task weights of the Nash bargaining solution, ``G w = 1 / w``.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik and Fetaya, "Multi-Task Learning as a
Bargaining Game", ICML 2022, https://arxiv.org/abs/2202.01017 (Algorithm 1). The paper
recomputes the weights every few steps to cut the cost (Sec. 5.3): ``update_every=k`` does
that and the steps in between cost one backward pass. Solved by torchjd's
:class:`torchjd.aggregation.NashMTL` (cvxpy/ECOS: extra ``torchjd[nash-mtl]``); stateful,
reset by :meth:`setup`.
"""

from __future__ import annotations

import torch

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

    def __init__(self, max_norm: float = 1.0, optim_niter: int = 20, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        self.max_norm = float(max_norm)
        self.optim_niter = int(optim_niter)
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import NashMTL

        return NashMTL(n_tasks=num_objectives, max_norm=self.max_norm, update_weights_every=1, optim_niter=self.optim_niter)


__all__ = ["NashMTL"]
