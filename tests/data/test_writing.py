"""The writer thread of the serializers: order, bounded queue, errors handed back."""

from __future__ import annotations

import copy
import threading
import time

import pytest

from m3l.data.writing import WriterThread


def test_jobs_run_in_order_off_the_caller_thread():
    writer, seen = WriterThread(depth=2), []
    for i in range(20):
        writer.submit(lambda i: seen.append((i, threading.current_thread().name)), i)
    writer.flush()
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"m3l-writer"}
    writer.close()
    assert writer._thread is None


def test_the_queue_is_bounded():
    writer, release, started = WriterThread(depth=1), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)

    writer.submit(slow)
    started.wait(5)
    writer.submit(lambda: None)  # waits in the queue
    blocked = threading.Thread(target=writer.submit, args=(lambda: None,))
    blocked.start()
    time.sleep(0.2)
    assert blocked.is_alive()  # a third job waits for room: memory stays bounded
    release.set()
    blocked.join(5)
    assert not blocked.is_alive()
    writer.close()


def test_an_unexpected_error_comes_back_to_the_caller_and_drops_the_rest():
    writer, seen = WriterThread(depth=4), []

    def boom() -> None:
        raise RuntimeError("disk on fire")

    writer.submit(boom)
    writer.submit(seen.append, 1)
    with pytest.raises(RuntimeError, match="disk on fire"):
        writer.flush()
    assert seen == []  # queued after the failure: dropped, so the caller lists it as not corrected
    writer.submit(seen.append, 2)  # the error was handed over once; the writer goes on
    writer.close()
    assert seen == [2]


def test_depth_zero_writes_in_the_caller():
    writer, seen = WriterThread(depth=0), []
    writer.submit(lambda: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name]


def test_a_copy_starts_idle():
    writer = WriterThread(depth=3)
    writer.submit(lambda: None)
    twin = copy.deepcopy(writer)
    assert twin.depth == 3 and twin._thread is None
    writer.close()
