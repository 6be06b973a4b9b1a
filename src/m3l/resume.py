"""Resuming a training run so that it ends where the uninterrupted run would have.

Lightning's checkpoints restore weights, optimizer, schedulers, loops and callbacks, but not
the random number generators. Everything that draws from them after a resume (the
shuffling of the next epoch, dropout, random augmentations on the global RNG) would then
differ from the uninterrupted run. :class:`RNGStateCheckpoint` stores the Python, NumPy and
torch (CPU and CUDA) generator states in every checkpoint and puts them back on load.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class RNGStateCheckpoint(Callback):
    """Saves the global RNG states with each checkpoint and restores them on resume.

    In a distributed run every rank saves and restores its own states (Lightning keeps one
    callback state per checkpoint, written by rank zero, so ranks resume from rank zero's
    states; with the seeding of ``seed_everything(workers=True)`` that is the same stream
    the data samplers use).
    """

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        random.setstate(_as_python_state(state_dict["python"]))
        _set_numpy_state(state_dict["numpy"])
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            states = state_dict["cuda"]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)
        log.info("Restored the random number generators of the checkpoint.")


def _numpy_state() -> dict[str, Any]:
    """NumPy's legacy global state as tensors and numbers (loadable with ``weights_only``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def _as_python_state(state: Any) -> tuple:
    """``random.setstate`` wants tuples; a checkpoint may hand back lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
