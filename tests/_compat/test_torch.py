"""Canaries of :mod:`m3l._compat.torch`."""

from __future__ import annotations

import importlib
import logging

from torch import nn

from m3l._compat import torch as compat
from tests._compat import canary


def test_is_normalization_layer():
    with canary(
        "torch",
        "the base class of its normalization layers (torch.nn.modules.batchnorm._NormBase)",
        "torch.is_normalization_layer",
    ):
        for layer in (
            nn.BatchNorm1d(2),
            nn.BatchNorm2d(2),
            nn.BatchNorm3d(2),
            nn.SyncBatchNorm(2),
            nn.InstanceNorm2d(2),
            nn.LazyBatchNorm2d(),
            nn.LazyInstanceNorm2d(),
        ):
            assert compat.is_normalization_layer(layer), f"{type(layer).__name__} is not found"
        for layer in (nn.LayerNorm(2), nn.GroupNorm(1, 2), nn.Conv2d(1, 1, 1), nn.Identity()):
            assert not compat.is_normalization_layer(layer), f"{type(layer).__name__} is taken for one"


def test_onnx_registration_logger():
    with canary(
        "torch",
        f"where the ONNX exporter logs a missing operator ({compat.ONNX_REGISTRATION_MODULE})",
        "torch.onnx_registration_logger",
    ):
        module = importlib.import_module(compat.ONNX_REGISTRATION_MODULE)
        loggers = [v for v in vars(module).values() if isinstance(v, logging.Logger)]
        assert loggers == [compat.onnx_registration_logger()], f"the module's loggers are {loggers}"
