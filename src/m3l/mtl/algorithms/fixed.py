"""Linear scalarization with fixed weights: ``sum_t w_t L_t``.

The classical weighted-sum method of multi-objective optimization; see Xin et al., "Do Current
Multi-Task Optimization Methods in Deep Learning Even Help?", NeurIPS 2022,
https://arxiv.org/abs/2209.11379, for its strength as a tuned baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from m3l.errors import M3LError
from m3l.mtl.algorithms.base import StepContext, Weighting


class FixedWeighting(Weighting):
    """Fixed per-objective weights given by name (objectives not named get ``default``)."""

    def __init__(self, weights: Mapping[str, float], default: float = 1.0) -> None:
        super().__init__()
        self.given = dict(weights)
        self.default = float(default)
        self.register_buffer("fixed", torch.zeros(0), persistent=False)

    def setup(self, names: Sequence[str]) -> None:
        super().setup(names)
        unknown = sorted(set(self.given) - set(names))
        if unknown:
            raise M3LError(
                f"FixedWeighting: weights given for unknown objectives {unknown}; the "
                f"objectives are {list(names)}.\n  fix: use those names as keys"
            )
        self.fixed = torch.tensor([float(self.given.get(n, self.default)) for n in names])

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        return self.fixed.to(losses)
