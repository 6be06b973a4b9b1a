"""Reading ahead on a thread: same batches, same order, errors where they happened."""

from __future__ import annotations

import gc
import threading

import pytest
import torch
from torch.utils.data import Dataset

from m3l.data.read_ahead import ReadAheadLoader


class Numbers(Dataset):
    def __init__(self, n: int, bad: int | None = None) -> None:
        self.n, self.bad, self.threads = n, bad, set()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        self.threads.add(threading.current_thread().name)
        if i == self.bad:
            raise OSError(f"cannot read item {i}")
        return torch.tensor([i])


def test_same_batches_in_order_read_on_a_thread():
    data = Numbers(10)
    batches = [b.tolist() for b in ReadAheadLoader(data, batch_size=3, read_ahead=2)]
    assert batches == [[[0], [1], [2]], [[3], [4], [5]], [[6], [7], [8]], [[9]]]
    assert data.threads == {"m3l-reader"}
    assert len(ReadAheadLoader(data, batch_size=3)) == 4


def test_read_ahead_zero_reads_in_the_caller():
    data = Numbers(4)
    assert len(list(ReadAheadLoader(data, batch_size=2, read_ahead=0))) == 2
    assert data.threads == {threading.current_thread().name}


def test_an_error_is_raised_where_its_batch_would_be():
    got = []
    with pytest.raises(OSError, match="cannot read item 5"):
        for batch in ReadAheadLoader(Numbers(10, bad=5), batch_size=2):
            got.append(batch.tolist())
    assert got == [[[0], [1]], [[2], [3]]]


def test_a_dropped_iterator_ends_its_thread():
    it = iter(ReadAheadLoader(Numbers(1000), batch_size=1, read_ahead=1))
    next(it)
    thread = it._thread
    del it
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()
