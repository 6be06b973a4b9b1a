"""GradVac: raise the cosine of each task-gradient pair to an EMA target.

Wang, Tsvetkov, Firat and Cao, "Gradient Vaccine: Investigating and Improving Multi-task
Optimization in Massively Multilingual Models", ICLR 2021, https://arxiv.org/abs/2010.05874
(Algorithm 2; ``beta`` the EMA rate of the targets). torchjd's
:class:`torchjd.aggregation.GradVac`; stateful (targets reset by :meth:`setup`) and random
(pair order), so under DDP the ranks use rank 0's update.
"""

from __future__ import annotations

import torch

from m3l.mtl.algorithms.jacobian import JacobianAggregator, Wrt


class GradVac(JacobianAggregator):
    """Gradient vaccine (Algorithm 2 of Wang et al., 2021).

    Args:
        beta: EMA rate of the cosine targets.
        wrt: ``"parameters"`` or ``"representation"`` (see :mod:`m3l.mtl.algorithms.jacobian`).
        update_every: recompute the weights every this many steps.
    """

    stochastic = True

    def __init__(self, beta: float = 0.5, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        self.beta = float(beta)
        super().__init__(wrt=wrt, update_every=update_every)

    def build(self, num_objectives: int) -> torch.nn.Module:
        from torchjd.aggregation import GradVac

        return GradVac(beta=self.beta)


__all__ = ["GradVac"]
