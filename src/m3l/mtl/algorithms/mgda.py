"""MGDA and MGDA-UB: the min-norm point of the convex hull of the task gradients.

Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018,
https://arxiv.org/abs/1810.04650. MGDA runs the Frank-Wolfe solver of Algorithm 2 on the
gradients of the shared parameters; MGDA-UB (Sec. 3.3) runs it on the gradients of the
shared representation (one backward pass per task through the heads only), an upper bound
that is much cheaper. The solver is torchjd's :class:`torchjd.aggregation.MGDA`.
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class MGDA(JacobianAggregator):
    """Multiple-gradient descent (Algorithm 2 of Sener and Koltun, 2018).

    Args:
        epsilon: the Frank-Wolfe step size below which the solver stops.
        max_iters: most Frank-Wolfe iterations.
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    def __init__(
        self, epsilon: float = 1e-3, max_iters: int = 100, wrt: Wrt = "parameters", update_every: int = 1
    ) -> None:
        self.epsilon = float(epsilon)
        self.max_iters = int(max_iters)
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import MGDA

        return MGDA(epsilon=self.epsilon, max_iters=self.max_iters)


class MGDAUB(MGDA):
    """MGDA-UB: :class:`MGDA` on the gradients of the shared representation (Sec. 3.3).

    Needs one backbone pass for all objectives (a :class:`~m3l.mtl.MultiHeadTask`).
    """

    def __init__(self, epsilon: float = 1e-3, max_iters: int = 100, update_every: int = 1) -> None:
        super().__init__(epsilon=epsilon, max_iters=max_iters, wrt="representation", update_every=update_every)


__all__ = ["MGDA", "MGDAUB"]
