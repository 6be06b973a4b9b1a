"""Capacity metrics, gradient conflict and task weights, logged and plotted during training.

Functions on tensors first, then the :class:`Diagnostics` Lightning callback that logs them as
metrics (``diag/...``) and plots them as images to the active logger (TensorBoard, W&B,
MLflow; a PNG under the log dir otherwise).

- independent capacity: per layer, the share of weakly active weights
  (``|w| < threshold * max|w|``); a high share means unused capacity.
- data-dependent capacity: normalized entropy of the features and the mean absolute Pearson
  correlation between feature channels (redundancy).
- algorithm-dependent capacity: residual model capacity
  ``max(0, (L_{t-k} - L_t) / L_{t-k})``, the relative loss decrease over ``k`` steps.
- gradient conflict: pairwise cosine similarity of the task gradients on the shared
  parameters (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).

EMTL's capacity measures, under EMTL's names, logged once per epoch by the :class:`Capacity`
callback (``capacity/I-Capacity``, ``capacity/Entropy``, ``capacity/Correlation``,
``capacity/DD-Capacity``, ``capacity/AD-Capacity``, ``capacity/RMC/<head>``):

- :func:`i_capacity` (I-Capacity): per parameter tensor (weights, biases, normalization scales),
  the share of entries with ``|w| <= max(mean|w| - std|w|, 0.001)``, averaged over tensors.
  Not the same quantity as :func:`independent_capacity` (share under 1% of the layer's
  largest weight, weight matrices only), which reads far lower on the same backbone.
- :func:`dd_capacity` (DD-Capacity): ``(Correlation - Entropy + 1) / 2`` of the backbone's
  features, Entropy with 100 bins per feature.
- :class:`ResidualCapacity` (RMC): per head, ``max(0, (L_{e-k} - L_e) / L_{e-k})`` of its
  per-epoch loss over a lookback of ``k`` epochs (1 until ``k`` epochs are known).
- :func:`ad_capacity` (AD-Capacity): the share of heads whose RMC exceeds 0.01, never
  increasing over a run.
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from m3l.mtl.data import merge_task_batches

log = logging.getLogger(__name__)


def independent_capacity(module: nn.Module, threshold: float = 0.01) -> dict[str, float]:
    """Share of weakly active weights per layer (weights of dim >= 2): ``|w| < threshold *
    max|w|``. A stricter measure than EMTL's I-Capacity (:func:`i_capacity`)."""
    out = {}
    for name, param in module.named_parameters():
        if param.dim() < 2:
            continue
        w = param.detach().abs()
        scale = w.max().clamp_min(1e-12)
        out[name.removesuffix(".weight")] = float((w < threshold * scale).float().mean())
    return out


def _channels(features: Tensor) -> Tensor:
    """``(N, C, ...)`` -> ``(N, C)`` by averaging the other dimensions."""
    return features.flatten(2).mean(-1) if features.dim() > 2 else features


def normalized_entropy(features: Tensor, bins: int = 32) -> float:
    """Mean over channels of the histogram entropy of activations divided by ``log(bins)``."""
    x = _channels(features.detach().float())
    values = []
    for column in x.T:
        lo, hi = float(column.min()), float(column.max())
        if hi - lo < 1e-12:
            values.append(0.0)
            continue
        counts = torch.histc(column, bins=bins, min=lo, max=hi)
        p = counts / counts.sum()
        p = p[p > 0]
        values.append(float(-(p * p.log()).sum() / np.log(bins)))
    return float(np.mean(values)) if values else 0.0


def mean_abs_correlation(features: Tensor) -> float:
    """Mean absolute Pearson correlation between distinct feature channels."""
    x = _channels(features.detach().float())
    x = x[:, x.std(0) > 1e-12]
    if x.shape[1] < 2 or x.shape[0] < 2:
        return 0.0
    corr = torch.corrcoef(x.T)
    off = ~torch.eye(corr.shape[0], dtype=torch.bool, device=corr.device)
    return float(corr[off].abs().mean())


def residual_model_capacity(losses: Sequence[float], k: int) -> float:
    """``max(0, (L_{t-k} - L_t) / L_{t-k})`` over the last ``k + 1`` losses."""
    if len(losses) <= k or losses[-k - 1] == 0:
        return float("nan")
    before, now = float(losses[-k - 1]), float(losses[-1])
    return max(0.0, (before - now) / before)


def gradient_cosines(jacobian: Tensor, names: Sequence[str]) -> dict[tuple[str, str], float]:
    """Pairwise cosine similarity of the rows of ``jacobian`` ``[T, P]``."""
    unit = jacobian / jacobian.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.T
    return {(names[i], names[j]): float(cos[i, j]) for i in range(len(names)) for j in range(i + 1, len(names))}


# ------------------------------------------------------------- EMTL's capacity measures
def i_capacity(module: nn.Module, min_threshold: float = 0.001) -> float:
    """EMTL's I-Capacity: the mean over parameter tensors of the share of entries whose
    magnitude is at most ``max(mean - std, min_threshold)`` of that tensor's magnitudes (std
    unbiased; a tensor with one entry has std 0)."""
    shares = []
    for param in module.parameters():
        magnitude = param.detach().abs().flatten().float()
        spread = magnitude.std() if magnitude.numel() > 1 else magnitude.new_zeros(())
        threshold = max(float(magnitude.mean() - spread), min_threshold)
        shares.append(float((magnitude <= threshold).float().mean()))
    return float(np.mean(shares)) if shares else float("nan")


def dd_capacity(features: Tensor, bins: int = 100) -> dict[str, float]:
    """EMTL's data-dependent capacity of features ``(N, D)`` (or ``(N, C, ...)``, averaged per
    channel): ``Entropy`` (normalized, ``bins`` per feature), ``Correlation`` (mean absolute
    Pearson r between distinct features; constant features, whose r is undefined, are left
    out where EMTL returned NaN) and ``DD-Capacity = (Correlation - Entropy + 1) / 2``."""
    entropy = normalized_entropy(features, bins=bins)
    correlation = mean_abs_correlation(features)
    return {"Entropy": entropy, "Correlation": correlation, "DD-Capacity": (correlation - entropy + 1) / 2}


class ResidualCapacity:
    """EMTL's residual model capacity (RMC) of each head from its per-epoch losses.

    The first ``lookback`` values of a head give 1; afterwards ``max(0, (old - loss) / old)``
    where ``old`` is the loss ``lookback`` updates earlier.
    """

    def __init__(self, lookback: int = 5) -> None:
        self.lookback = int(lookback)
        self.losses: dict[str, deque[float]] = {}
        self.values: dict[str, float] = {}

    def update(self, head: str, loss: float) -> float:
        window = self.losses.setdefault(head, deque(maxlen=self.lookback))
        if len(window) < self.lookback:
            value = 1.0
        else:
            old = window[0]
            value = max(0.0, (old - loss) / old) if old else 0.0
        window.append(float(loss))
        self.values[head] = value
        return value


def ad_capacity(rmcs: Mapping[str, float], min_threshold: float = 0.01, previous: float = 1.0) -> float:
    """EMTL's AD-Capacity: the share of heads whose RMC exceeds ``min_threshold``, at most
    ``previous`` (the value never rises over a run); 1 when no RMC is known yet."""
    if not rmcs:
        return 1.0
    share = sum(1 for v in rmcs.values() if v > min_threshold) / len(rmcs)
    return min(share, previous)


class Capacity(L.Callback):
    """EMTL's capacity measures once per training epoch (``capacity/...``).

    Args:
        lookback: epochs of the residual model capacity (EMTL's ``rmc_lookback``).
        min_threshold: I-Capacity's smallest threshold.
        ad_threshold: the RMC above which a head still counts as learning (AD-Capacity).
        bins: Entropy's histogram bins.
        max_samples: at most this many feature rows for the DD-Capacity.

    A head's epoch loss is its ``eval_train/<head>/loss`` (the full pass over its training
    set that EMTL used, with ``eval_splits`` holding ``train``), else ``val/<head>/loss``,
    else its mean training loss of the epoch. Only heads trained in the epoch get a new RMC;
    the others keep theirs. The features for the DD-Capacity are the backbone's outputs on the
    evaluated test split (EMTL's choice), else on the val split; with neither, no DD-Capacity.
    EMTL measured after each task's pass under alternating training; m3l measures once per
    epoch, after every task's pass.
    """

    def __init__(
        self,
        lookback: int = 5,
        min_threshold: float = 0.001,
        ad_threshold: float = 0.01,
        bins: int = 100,
        max_samples: int = 10000,
    ) -> None:
        self.min_threshold, self.ad_threshold = min_threshold, ad_threshold
        self.bins, self.max_samples = bins, max_samples
        self.rmc = ResidualCapacity(lookback)
        self.ad = 1.0
        self.features: dict[str, list[Tensor]] = {}
        self.history: list[dict[str, float]] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.features = {}

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking:
            return
        prefix = pl_module.eval_prefix(dataloader_idx) if hasattr(pl_module, "eval_prefix") else "val"
        if prefix not in ("val", "eval_test"):
            return
        rows = self.features.setdefault(prefix, [])
        if sum(len(f) for f in rows) >= self.max_samples:
            return
        with torch.no_grad():
            for name, task_batch in merge_task_batches(batch).items():
                inputs, _ = pl_module.task_by_name[name].split_batch(task_batch)
                feats = pl_module.backbone(inputs)
                if isinstance(feats, Tensor):
                    rows.append((feats.flatten(2).mean(-1) if feats.dim() > 2 else feats).float().cpu())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        # runs after the epoch's validation and before the module resets its epoch losses
        metrics = trainer.callback_metrics
        counts = pl_module.epoch_loss_count.tolist()
        means = (pl_module.epoch_loss_sum / pl_module.epoch_loss_count.clamp_min(1)).tolist()
        values: dict[str, float] = {"capacity/I-Capacity": i_capacity(pl_module.backbone, self.min_threshold)}
        for i, head in enumerate(pl_module.objective_names):
            if not counts[i]:
                continue  # not trained this epoch
            loss = next(
                (float(metrics[k]) for k in (f"eval_train/{head}/loss", f"val/{head}/loss") if k in metrics), means[i]
            )
            values[f"capacity/RMC/{head}"] = self.rmc.update(head, loss)
        self.ad = ad_capacity(self.rmc.values, self.ad_threshold, self.ad)
        values["capacity/AD-Capacity"] = self.ad
        rows = self.features.get("eval_test") or self.features.get("val")
        if rows:
            joined = torch.cat(rows)[: self.max_samples]
            values.update({f"capacity/{k}": v for k, v in dd_capacity(joined, self.bins).items()})
        self.features = {}
        self.history.append(values)
        pl_module.log_dict(values, on_step=False, on_epoch=True, batch_size=1)


def log_image(logger: Any, key: str, image: np.ndarray, step: int) -> None:
    """Send an ``(H, W, 3)`` uint8 image to a Lightning logger, whatever its kind."""
    kind = type(logger).__name__
    if kind == "TensorBoardLogger":
        logger.experiment.add_image(key, image, step, dataformats="HWC")
    elif kind == "WandbLogger":
        logger.log_image(key=key, images=[image], step=step)
    elif kind == "MLFlowLogger":
        logger.experiment.log_image(logger.run_id, image, key=key.replace("/", "_"), step=step)
    else:
        from PIL import Image

        root = Path(getattr(logger, "log_dir", None) or ".") / "plots"
        root.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / f"{key.replace('/', '_')}_{step:06d}.png")


def plot_series(series: Mapping[str, Sequence[tuple[int, float]]], title: str) -> np.ndarray | None:
    """A line plot of ``{name: [(step, value)]}`` as an RGB array (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: diagnostics are logged as metrics only")
        return None
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    for name, points in series.items():
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=name)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    from PIL import Image

    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


class Diagnostics(L.Callback):
    """Every ``every_n_steps`` training steps, log the diagnostics of a MultiTaskModule.

    Args:
        every_n_steps: how often (the gradient conflict costs one backward per objective).
        k: the horizon of the residual model capacity.
        threshold: relative magnitude under which a weight counts as weakly active.
        plot_every_n_steps: how often the curves are plotted to the logger (0: never).
    """

    def __init__(
        self, every_n_steps: int = 50, k: int = 10, threshold: float = 0.01, plot_every_n_steps: int = 200
    ) -> None:
        self.every_n_steps, self.k, self.threshold = max(1, every_n_steps), k, threshold
        self.plot_every_n_steps = plot_every_n_steps
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.losses: dict[str, deque[float]] = {}

    def _record(self, key: str, step: int, value: float) -> None:
        self.history.setdefault(key, []).append((step, value))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = int(getattr(pl_module, "train_steps", trainer.global_step))
        metrics = {**trainer.callback_metrics, **getattr(pl_module, "step_metrics", {})}
        batches = merge_task_batches(batch)
        # only the objectives this step trained: an idle task's last loss is not a new value
        present = [o.name for t in batches for o in pl_module.task_by_name[t].objectives]
        for name in present:
            loss = metrics.get(f"train/{name}/loss")
            if loss is not None:
                queue = self.losses.setdefault(name, deque(maxlen=self.k + 1))
                queue.append(float(loss))
            weight = metrics.get(f"weights/{name}")
            if weight is not None:
                self._record(f"weights/{name}", step, float(weight))
        if step % self.every_n_steps:
            return
        idle = {f"diag/residual_capacity/{n}" for n in getattr(pl_module, "objective_names", []) if n not in present}
        forget = getattr(pl_module, "forget_step_values", None)
        if forget is not None:
            forget(idle)
        values = self.compute(pl_module, batches)
        for key, value in values.items():
            self._record(key, step, value)
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1)
        if self.plot_every_n_steps and step % self.plot_every_n_steps == 0:
            self.plot(trainer, step)

    def compute(self, pl_module: Any, batches: Mapping[str, Any]) -> dict[str, float]:
        """The diagnostics of ``pl_module`` on ``{task: batch}`` (already on its device)."""
        out: dict[str, float] = {}
        for layer, share in independent_capacity(pl_module.backbone, self.threshold).items():
            out[f"diag/weak_weights/{layer}"] = share
        present = {o.name for t in batches for o in pl_module.task_by_name[t].objectives}
        for name, queue in self.losses.items():
            if name not in present:  # not trained in this step: its capacity did not change
                continue
            rmc = residual_model_capacity(list(queue), self.k)
            if rmc == rmc:
                out[f"diag/residual_capacity/{name}"] = rmc
        losses, features = [], []
        was_training = pl_module.training
        with torch.enable_grad():
            for task_name, task_batch in batches.items():
                task = pl_module.task_by_name[task_name]
                inputs, targets = task.split_batch(task_batch)
                feats = pl_module.backbone(inputs)
                if isinstance(feats, Tensor):
                    features.append(feats.detach())
                extra = task.head_kwargs(task_batch, inputs)
                for objective in task.objectives:
                    losses.append(objective.criterion(objective.head(feats, **extra), targets[objective.name]))
        if features:
            joined = torch.cat([f.flatten(2).mean(-1) if f.dim() > 2 else f for f in features])
            out["diag/feature_entropy"] = normalized_entropy(joined)
            out["diag/feature_correlation"] = mean_abs_correlation(joined)
        names = [n for t in batches for n in (o.name for o in pl_module.task_by_name[t].objectives)]
        if len(losses) > 1:
            context = pl_module.step_context(names)
            if context.shared_parameters:
                jacobian = context.gradients(losses)  # the scalars: no zeros through other graphs
                for (a, b), cos in gradient_cosines(jacobian, names).items():
                    out[f"diag/grad_cosine/{a}-vs-{b}"] = cos
        pl_module.train(was_training)
        return out

    def plot(self, trainer: L.Trainer, step: int) -> None:
        """Plot weights, gradient cosines and residual capacity to every logger."""
        groups = {
            "weights": {k: v for k, v in self.history.items() if k.startswith("weights/")},
            "grad_cosine": {k: v for k, v in self.history.items() if "grad_cosine" in k},
            "residual_capacity": {k: v for k, v in self.history.items() if "residual_capacity" in k},
        }
        for title, series in groups.items():
            if not series:
                continue
            image = plot_series(series, title)
            if image is None:
                return
            for logger in trainer.loggers:
                log_image(logger, f"diag/{title}", image, step)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.plot_every_n_steps:
            self.plot(trainer, int(getattr(pl_module, "train_steps", trainer.global_step)))
