"""Exact evaluation in distributed runs.

A ``DistributedSampler`` pads every rank's shard to the same length by repeating samples,
and averaging per-rank means weighs unequal shards wrongly; either one changes a test
metric. m3l's test runs instead give each sample to exactly one rank
(:class:`ExactDistributedTest`), and :func:`log_mean` accumulates a metric's weighted sum
and count on every rank and reduces both, so the result is the single-device mean.
Prediction (``correct``) already uses Lightning's unrepeated sampler.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSamplerWrapper
from lightning.pytorch.utilities.data import has_iterable_dataset
from lightning_utilities.core.apply_func import apply_to_collection
from torch.utils.data import DataLoader, DistributedSampler
from torchmetrics import Metric

from m3l._compat.lightning import uses_distributed_sampler, with_sampler
from m3l.errors import ConfigError

log = logging.getLogger(__name__)


class ExactDistributedTest(Callback):
    """In a multi-process test run, shard the test loaders without padding duplicates.

    Wraps ``datamodule.test_dataloader`` for the run so each loader gets an
    ``UnrepeatedDistributedSamplerWrapper`` (ranks may get shards differing by one sample);
    loaders that already have a distributed sampler, or iterate a dataset, are left alone.
    """

    def __init__(self) -> None:
        self._patched: tuple[Any, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "test" or trainer.world_size <= 1:
            return
        if not uses_distributed_sampler(trainer):
            return  # the user shards the data
        owner = trainer.datamodule if trainer.datamodule is not None else pl_module
        original = owner.test_dataloader

        def test_dataloader() -> Any:
            return apply_to_collection(original(), DataLoader, _unrepeated, trainer)

        owner.test_dataloader = test_dataloader
        self._patched = (owner, original)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._patched is not None:
            owner, original = self._patched
            owner.test_dataloader = original
            self._patched = None


def _unrepeated(loader: DataLoader, trainer: pl.Trainer) -> DataLoader:
    if isinstance(loader.sampler, DistributedSampler) or has_iterable_dataset(loader):
        return loader
    size = len(loader.sampler)
    if size < trainer.world_size:
        # a rank without samples never logs a metric, and the others would wait for it forever
        raise ConfigError(
            f"The test set has {size} sample(s), fewer than the {trainer.world_size} processes of this "
            f"run: some would get none. Test on at most {size} device(s), e.g. trainer.devices={size} "
            "trainer.num_nodes=1."
        )
    sampler = UnrepeatedDistributedSamplerWrapper(
        loader.sampler, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
    return with_sampler(loader, sampler, stage="test")


_KEY = re.compile(r"[^0-9A-Za-z_]")


class WeightedMean(Metric):
    """Sum of ``value * weight`` and of ``weight`` (float64), summed over processes.

    (torchmetrics' ``MeanMetric`` drops the weights when NaN checks are disabled, and NaN
    must reach the logs so that sweeps see a diverged run.)
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: float) -> None:
        self.total += value.detach().to(torch.float64).sum() * weight
        self.count += weight * value.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).to(torch.float32)


def log_mean(module: pl.LightningModule, name: str, value: torch.Tensor, weight: int, **log_kwargs: Any) -> None:
    """Log the epoch mean of ``value`` (a batch's mean over its samples) weighted by
    ``weight`` (the batch size): the mean over samples, exact across ranks with unequal
    shards, as each rank's sum and count are reduced by Lightning at the end of the epoch."""
    store = getattr(module, "_m3l_means", None)
    if store is None:
        store = torch.nn.ModuleDict()
        module._m3l_means = store  # a child module without persistent state: not in state_dict
    key = _KEY.sub("_", name)
    if key not in store:
        store[key] = WeightedMean().to(value.device)
    metric = store[key]
    metric.update(value, weight)
    module.log(name, metric, metric_attribute=f"_m3l_means.{key}", **log_kwargs)


def logged_mean(module: pl.LightningModule, name: str) -> torch.Tensor:
    """The mean :func:`log_mean` has accumulated for ``name`` this epoch, reduced over the
    processes (a collective: every rank must ask for the same names)."""
    return module._m3l_means[_KEY.sub("_", name)].compute()
