"""The one checkpoint loader of m3l: every command and the Python API load through it.

A ``.ckpt`` / ``.pt`` file is a pickle, and unpickling can run code. m3l loads checkpoints with
torch's weights-only unpickler (tensors, numbers, strings, containers), and only when the user
opts in for that file (``checkpoint_trusted=true`` on the command line,
``checkpoint_trusted=True`` in Python) with the full unpickler. The environment variable
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, which can turn torch's own default to the full unpickler,
is ignored while m3l checks a file: it is not an opt-in for one file.

Files that are not checkpoints at all (an image, a text file, a zip of something else) are
named as such, without suggesting to trust them.

Here too: which file a ``checkpoint=`` value names (:func:`resolve_checkpoint`: a path,
``last``/``best`` of the newest run, ``pretrained``), loading weights into a net
(:func:`load_weights_into`), and resuming exactly (:class:`RNGStateCheckpoint`: Lightning's
checkpoints restore weights, optimizer, schedulers, loops and callbacks but not the random
number generators, so the shuffling, dropout and augmentations after a resume would differ
from the uninterrupted run; it stores the Python, NumPy and torch generator states in every
checkpoint and puts them back on load).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from m3l.errors import CheckpointError

log = logging.getLogger(__name__)

#: what the commands call the opt-in, for messages
CLI_TRUST_OPTION = "checkpoint_trusted=true"

_FORCE_UNSAFE_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"

# magic numbers of files people pass as checkpoint= by mistake, for the message
_KNOWN_FILES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image, WAV or AVI)"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (b"\x08", "possibly an ONNX model (export output, not a checkpoint)"),
)


@contextlib.contextmanager
def _weights_only_enforced() -> Iterator[None]:
    """Remove ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` for the duration of a load."""
    saved = os.environ.pop(_FORCE_UNSAFE_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[_FORCE_UNSAFE_ENV] = saved


def _describe(head: bytes) -> str:
    for magic, what in _KNOWN_FILES:
        if head.startswith(magic):
            return what
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "a text file"
    return f"a file starting with the bytes {head[:8]!r}"


def _not_a_checkpoint(path: Path, found: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a checkpoint: it is {found}. Expected a .ckpt written by "
        "`python -m m3l.run.train` (or any file written by torch.save) or a .safetensors file; "
        "check the checkpoint= path (checkpoint=last / checkpoint=best pick the newest run's)."
    )


def _not_safetensors(path: Path, exc: BaseException) -> CheckpointError:
    """The error for a ``.safetensors`` file that safetensors cannot read: named as what it is
    when that is known (an image renamed), else as truncated or damaged."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        head = b""
    known = next((what for magic, what in _KNOWN_FILES if head.startswith(magic) and magic != b"\x08"), None)
    if known:
        return CheckpointError(f"{path} is not a readable safetensors file: it is {known}. Check the checkpoint= path.")
    return CheckpointError(
        f"{path} is not a readable safetensors file ({_first_line(exc)}); it may be truncated or damaged "
        "(an interrupted copy or save). Use another copy of it."
    )


def _sniff(path: Path) -> None:
    """Refuse files that are neither a torch.save zip archive nor a legacy torch pickle."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); check the path and its permissions.") from exc
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(
                f"{path} is not a readable checkpoint: a damaged zip archive ({exc}); it may be "
                "truncated (an interrupted copy or save). Use another copy of it."
            ) from exc
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            raise _not_a_checkpoint(path, "a zip archive without the data.pkl of torch.save")
        return
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return  # a pickle: torch.save's legacy (non-zip) format
    raise _not_a_checkpoint(path, _describe(head))


def load_checkpoint(
    path: str | os.PathLike[str],
    trusted: bool = False,
    trust_option: str = CLI_TRUST_OPTION,
    map_location: Any = "cpu",
) -> Any:
    """Load a checkpoint (``.ckpt``, ``.pt``, ``.pth``, or ``.safetensors``).

    Without ``trusted``, only weights-only content loads (whatever
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says); pickled Python objects raise a
    :class:`CheckpointError` naming ``trust_option``, the opt-in of the caller's front end.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(map_location) if isinstance(map_location, str) else "cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own types
            raise _not_safetensors(path, exc) from exc
    _sniff(path)
    if trusted:
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{path} is not a readable checkpoint: {_first_line(exc)}") from exc
    with _weights_only_enforced():
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure here is a bad file for the user
            refused = _refused_global(path, str(exc))
            if refused is not None:
                raise _holds_code(path, refused, trust_option) from exc
            # (torch's own words here would advise weights_only=False: the wrong advice for a damaged file)
            reason = "its pickle is incomplete" if "Weights only load failed" in str(exc) else _first_line(exc)
            raise CheckpointError(
                f"{path} is not a readable checkpoint: {reason}. It may be truncated or "
                "damaged; use another copy of it."
            ) from exc


# how torch's weights-only unpickler names what it refused: a global it does not allow
# ("Unsupported global: GLOBAL pathlib.PosixPath was not an allowed global") or one of a
# module it blocks ("unsupported GLOBAL posix.system whose module posix is blocked")
_REFUSED_GLOBAL = re.compile(r"unsupported global:? (?:GLOBAL )?([\w.<>]+)", re.IGNORECASE)


def _refused_global(path: Path, text: str) -> str | None:
    """The name of the function or class a pickle asked for that the weights-only unpickler
    refused; None when torch's error is about something else, or the name is cut short by the
    end of the file (a truncated file, not code)."""
    found = _REFUSED_GLOBAL.search(text)
    if found:
        name = found.group(1)
        return None if _cut_short(path, name) else name
    if "Unsupported operand" in text or "WeightsUnpickler" in text:
        return "an object the weights-only unpickler does not allow"
    return None


def _cut_short(path: Path, name: str) -> bool:
    """Whether the pickle of ``path`` ends inside ``name`` (its GLOBAL opcode, ``c<module>\\n<name>\\n``,
    lacks the final newline): what a truncated file makes torch report as a refused global."""
    module, _, attribute = name.rpartition(".")
    if not module or not attribute:
        return True
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickled = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(pickled) if pickled else b""
        else:
            with open(path, "rb") as fh:
                data = fh.read(64 << 20)  # the pickle comes first, the tensor data after it
    except (OSError, zipfile.BadZipFile):
        return False
    opcode = f"{module}\n{attribute}".encode()
    at = data.rfind(opcode)
    return at >= 0 and not data[at + len(opcode) : at + len(opcode) + 1] == b"\n"


def _holds_code(path: Path, name: str, trust_option: str) -> CheckpointError:
    """The error for a pickle that holds code or objects besides weights: what it holds, and
    what its owner can do (trust it, or convert it once to weights only)."""
    what = name if " " in name else f"`{name}`"
    converted = path.with_name(f"{path.stem}-weights{path.suffix or '.ckpt'}")
    return CheckpointError(
        f"{path} holds code or pickled Python objects, not only weights: loading it would import and run {what}. m3l "
        "will not load it, since unpickling runs whatever the file says. If you wrote the file yourself and trust it, "
        f"pass {trust_option} to load it as it is, or convert it once to a weights-only checkpoint, which m3l loads "
        f"without trusting it: python -c \"import torch; c = torch.load('{path}', weights_only=False); "
        f"torch.save({{'state_dict': c.get('state_dict', c)}}, '{converted}')\". A file you did not write: do not "
        "trust it; ask its author for a .safetensors or weights-only file."
    )


def check_checkpoint(path: str | os.PathLike[str], trusted: bool = False, trust_option: str = CLI_TRUST_OPTION) -> None:
    """Refuse, before Lightning resumes from ``path``, a file that is not a checkpoint or that
    holds pickled objects the user did not opt in to (see :func:`load_checkpoint`)."""
    path = Path(path)
    if trusted or path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file.")
        if path.suffix != ".safetensors":
            _sniff(path)
            return
        from safetensors import safe_open

        try:  # reads the header and checks it against the file's size, not the tensors
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own types
            raise _not_safetensors(path, exc) from exc
        return
    load_checkpoint(path, trusted=False, trust_option=trust_option, map_location="cpu")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------- which file, and into a net


def resolve_checkpoint(spec: str | os.PathLike, cfg: Any) -> Path:
    """A checkpoint path from ``spec``: a file, ``last`` / ``best`` of the newest run whose net
    fits ``cfg`` (:func:`m3l.records.past_runs.pick_checkpoint`), or ``pretrained``: the weights that
    belong to the packaged model config (see m3l.weights.hub)."""
    return resolve_checkpoint_noted(spec, cfg)[0]


def resolve_checkpoint_noted(spec: str | os.PathLike, cfg: Any) -> tuple[Path, str | None]:
    """:func:`resolve_checkpoint`, and for ``best`` / ``last`` a note of which run's file it
    took and why (with the monitored metric's value for ``best``)."""
    text = str(spec)
    if text == "pretrained":
        from m3l.weights import hub

        from m3l.config import config_choices

        model = config_choices(cfg).get("model") or str(cfg.name)
        try:
            return hub.pretrained_weights(str(model)), None
        except hub.HubError as exc:
            raise CheckpointError(str(exc)) from exc
    if text in ("last", "best"):
        from m3l.records.past_runs import pick_checkpoint

        return pick_checkpoint(cfg, text)
    path = Path(text).expanduser()
    if not path.is_file():
        hint = " It is a directory: pass the .ckpt file inside it." if path.is_dir() else ""
        raise CheckpointError(
            f"checkpoint={text}: no such file.{hint} Pass a .ckpt or .safetensors file, "
            "checkpoint=last / checkpoint=best for the newest training run of this model, or "
            "checkpoint=pretrained for the weights m3l has for this model config."
        )
    return path, None


def load_weights_into(module: torch.nn.Module, path: Path, trusted: bool = False) -> None:
    """Load a Lightning checkpoint's ``state_dict`` (or a plain/safetensors state dict)."""
    payload = load_checkpoint(path, trusted=trusted)  # a .safetensors file too: one check of every file
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state_dict: it is not a model checkpoint.")
    own = module.state_dict()
    inner = getattr(module, "net", None)
    if isinstance(inner, torch.nn.Module) and state and not any(k.startswith("net.") for k in state):
        # the weights of the plain net alone (the form m3l.weights.hub ships): prefix them
        state = {f"net.{k}": v for k, v in state.items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs net {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = [f"{path} does not match the net {type(module).__name__}:"]
        if mismatched:
            parts.append("  shape mismatches: " + "; ".join(mismatched[:5]))
            parts.append("  (a different width/depth or number of channels? gray vs color is data.channels=1|3)")
        if missing:
            parts.append(f"  missing in checkpoint: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"  not in the net: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        parts.append("Use the model config the checkpoint was trained with (its run dir has config.yaml).")
        raise CheckpointError("\n".join(parts))
    module.load_state_dict(state)
    # where these weights came from: m3l's fast backends keep their ONNX export beside it
    module.weights_file = Path(path)


# ---------------------------------------------------------------------------- resuming exactly
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
    return {
        "name": str(name),
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def _as_python_state(state: Any) -> tuple:
    """``random.setstate`` wants tuples; a checkpoint may hand back lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
