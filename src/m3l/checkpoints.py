"""The one checkpoint loader of m3l: every command and the Python API load through it.

A ``.ckpt`` / ``.pt`` file is a pickle, and unpickling can run code. m3l loads checkpoints with
torch's weights-only unpickler (tensors, numbers, strings, containers), and only when the user
opts in for that file (``checkpoint_trusted=true`` on the command line,
``checkpoint_trusted=True`` in Python) with the full unpickler. The environment variable
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, which can turn torch's own default to the full unpickler,
is ignored while m3l checks a file: it is not an opt-in for one file.

Files that are not checkpoints at all (an image, a text file, a zip of something else) are
named as such, without suggesting to trust them.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from m3l.errors import CheckpointError

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
    path: str | os.PathLike[str], trusted: bool = False, trust_option: str = CLI_TRUST_OPTION,
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
            raise CheckpointError(f"{path} is not a readable .safetensors file: {_first_line(exc)}") from exc
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
            text = str(exc)
            if "Unsupported global" in text or "WeightsUnpickler" in text or "Unsupported operand" in text:
                detail = next((line.strip() for line in text.splitlines() if "WeightsUnpickler" in line), _first_line(exc))
                raise CheckpointError(
                    f"{path} contains pickled Python objects besides weights, which m3l does not load "
                    "by default (loading them can run code from the file). If you trust where the "
                    f"file comes from, pass {trust_option}.\n  ({detail})"
                ) from exc
            raise CheckpointError(
                f"{path} is not a readable checkpoint: {_first_line(exc)}. It may be truncated or "
                "damaged; use another copy of it."
            ) from exc


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
    load_checkpoint(path, trusted=False, trust_option=trust_option, map_location="cpu")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
