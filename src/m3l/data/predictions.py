"""What ``predict_step`` may return, read as images and one metadata dict per image (the
serializers' input; see docs/correction.md#what-predict_step-may-return)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from m3l.errors import PredictionFormatError

ACCEPTED_FORMS = (
    "a (B, C, H, W) tensor (written at the batch's `relpath`s, or as numbered files 00000.png, "
    "00001.png, ... when the batch has none), a tuple (images, paths) of a (B, C, H, W) tensor and B "
    "paths relative to serializer.root_dir, or a dict with the tensor under 'output' (other keys: "
    "per-item metadata such as 'relpath')"
)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}: ({', '.join(type(v).__name__ for v in value[:4])})"
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(map(str, value))}"
    return f"a {type(value).__name__}"


def _images(value: Any, returned: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        raise PredictionFormatError(
            f"serializer: predict_step returned {_describe(returned)}; expected {ACCEPTED_FORMS}."
        )
    return value


def prediction_items(prediction: Any, batch: Any) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The images of one ``predict_step`` result and one metadata dict per image.

    Metadata comes from the batch when it is a dict (m3l's correction items: ``relpath``,
    ``mode``, ``bit_depth``...), then from the prediction (a tuple's paths, a dict's other
    keys). Items without a ``relpath`` are numbered by the caller.
    """
    extra: dict[str, Any] = {}
    if isinstance(prediction, Mapping):
        if "output" not in prediction:
            raise PredictionFormatError(
                f"serializer: predict_step returned {_describe(prediction)} without 'output'; expected {ACCEPTED_FORMS}."
            )
        images = _images(prediction["output"], prediction)
        extra = {k: v for k, v in prediction.items() if k != "output"}
    elif isinstance(prediction, (tuple, list)) and len(prediction) == 2 and isinstance(prediction[0], torch.Tensor):
        images = _images(prediction[0], prediction)
        paths = prediction[1]
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else paths
        if (
            not isinstance(paths, Sequence)
            or len(paths) != images.shape[0]
            or not all(isinstance(p, (str, os.PathLike)) for p in paths)
        ):
            raise PredictionFormatError(
                f"serializer: predict_step returned (images of shape {tuple(images.shape)}, {_describe(prediction[1])}); "
                f"the paths must be {images.shape[0]} strings, one per image. Expected {ACCEPTED_FORMS}."
            )
        extra = {"relpath": [os.fspath(p) for p in paths]}
    else:
        images = _images(prediction, prediction)
    meta = {**(batch if isinstance(batch, Mapping) else {}), **extra}
    items = []
    for i in range(images.shape[0]):
        item = {
            key: (value[i] if isinstance(value, (list, tuple, torch.Tensor)) and not _scalar(value) else value)
            for key, value in meta.items()
            if key != "input"
        }
        items.append({k: (v.item() if isinstance(v, torch.Tensor) and v.ndim == 0 else v) for k, v in item.items()})
    return images, items


def _scalar(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim == 0
