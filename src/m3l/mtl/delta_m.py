"""Delta_m%: the average relative change of every metric against single-task baselines.

``Delta_m = 100/T * sum_t 1/N_t * sum_j (-1)^{l_j} (M_{t,j} - B_{t,j}) / B_{t,j}`` with
``l_j = 1`` when lower is better (so a positive Delta_m is an improvement). Maninis, Radosavovic
and Kokkinos, "Attentive Single-Tasking of Multiple Tasks", CVPR 2019,
https://arxiv.org/abs/1904.08918; Vandenhende et al., TPAMI 2021.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from m3l.errors import ConfigError


def delta_m(
    metrics: Mapping[str, Mapping[str, float]],
    baselines: Mapping[str, Mapping[str, float]],
    higher_is_better: Callable[[str, str], bool] | Mapping[str, Mapping[str, bool]],
) -> float:
    """Delta_m in percent over the metrics present in both ``metrics`` and ``baselines``.

    Args:
        metrics: ``{task: {metric: value}}`` of the multi-task model.
        baselines: the same keys for single-task models.
        higher_is_better: ``fn(task, metric)`` or ``{task: {metric: bool}}``.
    """

    def direction(task: str, metric: str) -> bool:
        if callable(higher_is_better):
            return bool(higher_is_better(task, metric))
        return bool(higher_is_better.get(task, {}).get(metric, True))

    per_task = []
    for task, base in baselines.items():
        if task not in metrics:
            raise ConfigError(
                f"Delta_m: baseline given for task {task!r} but the run has no metrics for it "
                f"(tasks with metrics: {sorted(metrics)}); drop it from the baselines or fix the task name"
            )
        terms = []
        for metric, b in base.items():
            if metric not in metrics[task]:
                raise ConfigError(
                    f"Delta_m: baseline metric {task}/{metric} missing from the run's metrics "
                    f"{sorted(metrics[task])}; use one of those names in the baselines"
                )
            if b == 0:
                raise ConfigError(
                    f"Delta_m: baseline {task}/{metric} is 0, so the relative change is undefined; drop that metric from the baselines"
                )
            sign = 1.0 if direction(task, metric) else -1.0
            terms.append(sign * (float(metrics[task][metric]) - float(b)) / abs(float(b)))
        if terms:
            per_task.append(sum(terms) / len(terms))
    if not per_task:
        raise ConfigError(
            "Delta_m: no baseline metrics given; pass baselines={task: {metric: value}} of single-task runs"
        )
    return 100.0 * sum(per_task) / len(per_task)
