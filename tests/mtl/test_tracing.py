"""m3l.mtl.tracing: which submodule failed, on what input, at which line of user code."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from m3l.mtl.tracing import TracedFailure, describe, missing_arguments, part_name, run_traced


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.second = nn.Linear(5, 2)  # does not fit the first layer's 8 outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def test_describe_names_shapes_and_dtypes_of_nested_values() -> None:
    value = {"x": torch.zeros(2, 3), "y": (torch.zeros(2, dtype=torch.long), 1.5)}
    assert describe(value) == "dict{'x': tensor (2, 3) float32, 'y': tuple[tensor (2,) int64, float]}"
    assert part_name(TwoLayers) == "TwoLayers" and part_name(TwoLayers()) == "TwoLayers"


def test_a_failure_names_the_submodule_its_input_and_the_user_line() -> None:
    with pytest.raises(TracedFailure) as caught:
        run_traced(TwoLayers(), torch.zeros(3, 4))
    failure = caught.value
    assert failure.submodule == "second" and not failure.at_first_layer
    assert isinstance(failure.error, RuntimeError)
    where = failure.where()
    assert "'second'" in where and "tensor (3, 8) float32" in where and "test_tracing.py" in where


def test_a_failure_at_the_first_layer_says_so_and_hooks_are_removed() -> None:
    module = TwoLayers()
    with pytest.raises(TracedFailure) as caught:
        run_traced(module, torch.zeros(3, 7))
    assert caught.value.submodule == "first" and caught.value.at_first_layer
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_missing_arguments_lists_required_parameters_left_unset() -> None:
    class Head(nn.Module):
        def forward(self, features, size, scale=1.0, *, mask):  # noqa: ANN001
            return features

    assert missing_arguments(Head(), 1, {}) == ["size", "mask"]
    assert missing_arguments(Head(), 2, {"mask": 0}) == []
