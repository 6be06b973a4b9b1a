from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from m3l.training.distributed import _unrepeated
from m3l.errors import ConfigError


def _loader(n: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.arange(n, dtype=torch.float32)), batch_size=1)


def _rank(rank: int, world: int) -> SimpleNamespace:
    # the two Trainer attributes the sharding reads
    return SimpleNamespace(world_size=world, global_rank=rank)


def test_shards_are_disjoint_and_complete():
    shards = [[int(b[0]) for b in _unrepeated(_loader(5), _rank(r, 2))] for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(5))
    assert not set(shards[0]) & set(shards[1])


def test_fewer_samples_than_processes_is_a_clear_error_not_a_hang():
    with pytest.raises(ConfigError, match=r"1 sample\(s\), fewer than the 2 processes.*trainer.devices=1"):
        _unrepeated(_loader(1), _rank(0, 2))
