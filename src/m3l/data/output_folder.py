"""The output folder of a correction (``serializer.root_dir``): what the serializers check and
keep there besides the outputs (see docs/correction.md).

- :func:`check_writable`: the folder is created and writable, checked at setup;
- :func:`lock_output_folder`: one run at a time writes into it (:class:`m3l.data.writing.FolderLock`);
- :func:`damaged_output`: an existing output that ``skip_existing`` must not keep;
- :func:`finish_failures_file`: ``failures.tsv`` describes the last run, or is logged;
- :class:`VideoOutputs`: what was written of each video, so that a video failing part way
  (a frame of another size or over the pixel limit) leaves nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from m3l.data.failures import Failure, write_failures
from m3l.data.io import VIDEO_EXTENSIONS, probe_video
from m3l.data.writing import FolderLock
from m3l.deploy.runtime import temp_file_beside
from m3l.errors import ConfigError

log = logging.getLogger(__name__)

#: the lock file of a run writing into ``root_dir`` (rank N > 0 of a DDP run: ``.m3l-correct.rankN.lock``)
LOCK_FILENAME = ".m3l-correct.lock"


def check_writable(root: Path) -> None:
    """Create ``root`` and write a probe file in it, or a :class:`ConfigError` naming it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = temp_file_beside(root / "write-probe", ".part")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(
            f"serializer.root_dir: cannot write into {root} ({err.strerror or err}). "
            "Choose a folder you can write to (it is created if missing)."
        ) from None


def lock_output_folder(root: Path, rank: int = 0) -> FolderLock:
    """Lock ``root`` for this run (per DDP rank), or a :class:`ConfigError` when another run
    holds it: two runs into one folder would both compute everything, remove each other's
    partial files and replace each other's ``failures.tsv``."""
    lock = FolderLock(root / (LOCK_FILENAME if rank == 0 else f".m3l-correct.rank{rank}.lock"))
    holder = lock.acquire()
    if holder is not None:
        raise ConfigError(
            f"serializer.root_dir: another correction ({holder}) is writing into {root} now. Wait for it to "
            f"finish, or choose another serializer.root_dir. (If no such process runs, the lock {lock.path} is "
            "released already: just run again.)"
        )
    return lock


def damaged_output(path: Path) -> str | None:
    """Why an existing output cannot be kept (empty, or not readable as the image or video its
    suffix says), or None."""
    try:
        if path.stat().st_size == 0:
            return "empty (0 bytes)"
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            probe_video(path)
            return None
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # noqa: BLE001 - any reason it cannot be read
        return f"not readable ({getattr(err, 'reason', None) or f'{type(err).__name__}: {err}'})"
    return None


def finish_failures_file(target: Path, failures: Sequence[Failure]) -> None:
    """Write ``failures`` to ``target`` (logged whole when it cannot be written) or, when there
    are none, remove the list an earlier run left there: it always describes the last run."""
    if failures:
        if write_failures(target, failures) is not None:
            log.error(
                "%d input(s) or output(s) failed; listed in %s:\n  %s",
                len(failures),
                target,
                "\n  ".join(map(str, failures)),
            )
    elif target.is_file() or target.is_symlink():
        try:
            target.unlink()
            log.info("removed %s, left by an earlier run: every input of this run was corrected", target)
        except OSError as err:
            log.warning("could not remove %s, left by an earlier run (%s): it does not describe this run", target, err)


class VideoOutputs:
    """What was written of each video (by relative path): its frames as images, its finished
    file, its first frame's size; and which videos failed, so that a failed one leaves nothing."""

    def __init__(self) -> None:
        self.frames: dict[str, list[Path]] = {}
        self.finished: dict[str, Path] = {}
        self.sizes: dict[str, tuple[int, ...]] = {}
        self.failed: set[str] = set()

    def size_refusal(self, relpath: str, frame_index: int, size: tuple[int, ...]) -> str | None:
        """None when frame ``frame_index`` (``size``: height, width) may be written; else why not:
        the reason, the first time its size differs from the video's first frame's, then ""."""
        if relpath in self.failed:
            return ""
        first = self.sizes.setdefault(relpath, size)
        if first == size:
            return None
        self.failed.add(relpath)
        return (
            f"frame {frame_index} is {size[1]}x{size[0]} pixels but the video began at {first[1]}x{first[0]}: videos "
            "whose frame size changes are not corrected (split it where the size changes, e.g. with ffmpeg); "
            "nothing was written for it"
        )

    def drop(self, relpath: str) -> int:
        """Remove what was written of ``relpath`` (and its frame folder when left empty); the
        number of files removed."""
        self.failed.add(relpath)
        frames, finished = self.frames.pop(relpath, []), self.finished.pop(relpath, None)
        paths = frames + ([finished] if finished is not None else [])
        for path in paths:
            path.unlink(missing_ok=True)
        for folder in {p.parent for p in frames}:
            try:
                folder.rmdir()  # the video's frame folder, when nothing else is in it
            except OSError:
                pass
        return len(paths)
