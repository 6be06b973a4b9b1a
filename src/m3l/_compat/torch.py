"""torch's private parts that m3l uses, one function each (see :mod:`m3l._compat`).

Checked on torch 2.13.
"""

from __future__ import annotations

import logging
from typing import Any

#: the module of torch's ONNX exporter that logs a warning per operator it has no function for
ONNX_REGISTRATION_MODULE = "torch.onnx._internal.exporter._registration"


def is_normalization_layer(module: Any) -> bool:
    """Whether ``module`` is one of torch's normalization layers with running statistics or
    their mode switch: ``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, ``InstanceNorm1d/2d/3d`` and
    their lazy forms (and any subclass of them).

    Reaches: ``torch.nn.modules.batchnorm._NormBase``. Why: torch has no public base class of
    these layers; a tuple of the public classes would miss a layer torch adds under the same
    base. Checked on torch 2.13.
    """
    from torch import nn

    return isinstance(module, nn.modules.batchnorm._NormBase)


def onnx_registration_logger() -> logging.Logger:
    """The logger of torch's ONNX exporter that warns once per operator it cannot find a
    function for (torchvision's, which m3l never uses).

    Reaches: the name of the private module ``torch.onnx._internal.exporter._registration``.
    Why: ``torch.onnx.export`` has no option for the exporter's log level. Checked on torch
    2.13.
    """
    return logging.getLogger(ONNX_REGISTRATION_MODULE)
