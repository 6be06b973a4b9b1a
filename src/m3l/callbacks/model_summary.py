"""The model summary m3l logs when a fit starts: one line instead of Lightning's table."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import ModelSummary

# one logger for all of m3l's callbacks, as before they had a module each (log filters name it)
log = logging.getLogger("m3l.callbacks")


class CompactModelSummary(ModelSummary):
    """The model in one line (class, parameters, size) instead of Lightning's table; FLOPs
    only when Lightning could count them (it needs ``example_input_array``)."""

    def __init__(self) -> None:
        super().__init__(max_depth=1)

    @staticmethod
    def summarize(
        summary_data, total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, **_: Any
    ) -> None:  # noqa: ANN001 - Lightning's signature
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_human_readable_count as _count,
        )

        def get_human_readable_count(n: int) -> str:
            return _count(n).strip()

        names = dict(summary_data).get("Type", [])
        kinds = ", ".join(str(n) for n in names[:4]) + (", ..." if len(names) > 4 else "")
        frozen = total_parameters - trainable_parameters
        text = f"Model: {get_human_readable_count(int(total_parameters))} parameters"
        if frozen:
            text += f" ({get_human_readable_count(int(frozen))} frozen)"
        text += f", {model_size:.1f} MB"
        if total_flops:
            text += f", {get_human_readable_count(int(total_flops))} FLOPs"
        log.info("%s%s", text, f" [{kinds}]" if kinds else "")
