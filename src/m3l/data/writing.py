"""Putting outputs on disk off the compute thread, and cleaning up after a killed run.

:class:`WriterThread` runs the serializers' writes (PNG/JPEG encoding, video frames) in order
on one thread while the net computes the next batch; at most ``depth`` batches wait, so a slow
disk slows the run instead of filling the memory. Each write still goes to a temporary file
renamed into place when complete (:func:`m3l.data.io.atomic_write`), so a stop never leaves a
half-written output under its final name; :func:`remove_partial_files` removes the temporary
files that a kill without warning (SIGKILL) left behind. :class:`FolderLock` keeps a second run
from writing into an output folder while a first one does.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()


class WriterThread:
    """Run write jobs in the order submitted, on one daemon thread, ``depth`` jobs queued at most.

    A job is expected to handle its own I/O errors (the serializers record them as failures);
    anything else it raises is kept, the jobs queued after it are dropped, and the error is
    raised again in the caller at the next :meth:`submit` or :meth:`flush`. ``depth=0`` runs
    each job in the caller, at once.
    """

    def __init__(self, depth: int = 2, name: str = "m3l-writer") -> None:
        self.depth, self.name = int(depth), name
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, self.depth))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __getstate__(self) -> dict[str, Any]:  # a copy (deepcopy, pickling for spawn) starts idle
        return {"depth": self.depth, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        self._raise()
        if self.depth <= 0:
            job(*args)
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._queue.put((job, args))

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task is _STOP:
                    return
                if self._error is None:  # after a failure the rest is dropped (listed as not corrected)
                    job, args = task
                    job(*args)
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                self._error = err
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every submitted job has run; raise the first unexpected error of one."""
        if self._thread is not None:
            self._queue.join()
        self._raise()

    def close(self) -> None:
        """Run what is queued, then end the thread (a later :meth:`submit` starts a new one)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._thread = None
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


# the name of m3l's temporary output files: see m3l.deploy.runtime.temp_file_beside
_PARTIAL = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.part$")


def remove_partial_files(root: Path) -> list[Path]:
    """Remove the temporary ``.<name>.<random>.part`` files that a killed run left under
    ``root`` (m3l writes every output to one and renames it when complete)."""
    removed = []
    if not root.is_dir():
        return removed
    for folder, _, files in os.walk(root):
        for name in files:
            if _PARTIAL.match(name):
                path = Path(folder) / name
                try:
                    path.unlink()
                except OSError as err:
                    log.warning("could not remove the partial file %s left by an earlier run: %s", path, err)
                    continue
                removed.append(path)
    if removed:
        log.warning("removed %d partial file(s) left under %s by an earlier run that was killed", len(removed), root)
    return removed


class FolderLock:
    """An advisory lock (``flock``) on the file ``path``, held while a run writes into its
    folder: a second run asking for it is told who holds it. The operating system drops the
    lock when its process ends, however it ends, so a killed run never leaves the folder locked;
    :meth:`release` also removes the file. Where ``flock`` is missing or refused (Windows, some
    network file systems) nothing is locked, with a warning."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def __getstate__(self) -> dict[str, Any]:  # a copy never holds the lock
        return {"path": self.path, "_fd": None}

    def acquire(self) -> str | None:
        """Take the lock: None when taken (or when locks are not supported), else who holds it
        (``pid N on HOST``, as the holder wrote it)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 256).decode("utf-8", "replace").strip()
                os.close(fd)
                return holder or "another process"
            except OSError as err:
                os.close(fd)
                log.warning(
                    "could not lock %s (%s): a second run into this folder would not be stopped", self.path, err
                )
                return None
            try:  # its holder may have removed the file between our open and flock: lock the new one
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            self._fd = fd
            return None

    def release(self) -> None:
        """Remove the file and drop the lock (nothing when not held)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
