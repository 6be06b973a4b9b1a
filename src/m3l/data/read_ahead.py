"""Reading the next batches while the net computes: a DataLoader whose batches are read and
decoded on a thread (``correct`` and ``test``; see docs/correction.md#speed-backend-and-precision).

Worker processes (``data.num_workers > 0``) already read ahead, at the cost of a process each and
of the failures the datasets record there (a worker's copy of the dataset is not the caller's).
Without them, :class:`ReadAheadLoader` keeps ``read_ahead`` batches decoded ahead on one thread
of this process: Pillow and PyAV decode with the GIL released, the datasets' failure lists stay
the caller's, the order is the DataLoader's, and an error while reading is raised in the caller
where the batch would have been.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

_END = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _fill(source: Iterator[Any], out: queue.Queue, stop: threading.Event) -> None:
    """Put the batches of ``source`` into ``out`` until it ends, fails or ``stop`` is set."""

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for batch in source:
            if not put(batch):
                return
    except BaseException as err:  # noqa: BLE001 - raised again in the consumer
        put(_Raised(err))
        return
    put(_END)


class _ReadAheadIterator:
    def __init__(self, source: Iterator[Any], depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        # the thread holds the source, the queue and the event, not this object: when the
        # consumer drops the iterator (a stop, an error) it is collected and the thread ends
        self._thread = threading.Thread(
            target=_fill, args=(source, self._queue, self._stop), name="m3l-reader", daemon=True
        )
        self._thread.start()
        self._done = False

    def __iter__(self) -> _ReadAheadIterator:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        value = self._queue.get()
        if value is _END or isinstance(value, _Raised):
            self._done = True
            self._stop.set()
            if value is _END:
                raise StopIteration
            raise value.error
        return value

    def close(self) -> None:
        self._stop.set()

    def __del__(self) -> None:
        self._stop.set()


class ReadAheadLoader(DataLoader):
    """A :class:`torch.utils.data.DataLoader` that, without worker processes, reads up to
    ``read_ahead`` batches ahead on a thread (0: reads in the caller, as a plain DataLoader)."""

    def __init__(self, *args: Any, read_ahead: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_ahead = int(read_ahead)

    def __iter__(self) -> Any:
        source = super().__iter__()
        if self.num_workers > 0 or self.read_ahead < 1:
            return source
        return _ReadAheadIterator(source, self.read_ahead)
