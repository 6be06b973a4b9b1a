"""The Lightning callbacks m3l adds, by the names configs use (``_target_: m3l.callbacks.X``);
each lives in the module of its job:

- :mod:`m3l.callbacks.progress`: ``progress_bar`` (``TerminalProgressBar`` or ``LogProgressBar``);
- :mod:`m3l.callbacks.model_summary`: ``CompactModelSummary``;
- :mod:`m3l.callbacks.best_checkpoint`: ``MonitoredCheckpoint``, a checkpoint callback that copes with
  modules that do not log the configured metric, and ``pick_monitor``;
- :mod:`m3l.callbacks.fast_inference`: ``FastInference``, the inference backend of ``correct``/``test``;
- :mod:`m3l.callbacks.image_logging`: ``ImageExamples``, ``log_image``, ``side_by_side``.
"""

from __future__ import annotations

from m3l.callbacks.best_checkpoint import FAR_WORSE_FRACTION, MonitoredCheckpoint, pick_monitor
from m3l.callbacks.fast_inference import FastInference
from m3l.callbacks.image_logging import ImageExamples, log_image, side_by_side
from m3l.callbacks.model_summary import CompactModelSummary
from m3l.callbacks.progress import LogProgressBar, TerminalProgressBar, progress_bar

__all__ = [
    "FAR_WORSE_FRACTION",
    "CompactModelSummary",
    "FastInference",
    "ImageExamples",
    "LogProgressBar",
    "MonitoredCheckpoint",
    "TerminalProgressBar",
    "log_image",
    "pick_monitor",
    "progress_bar",
    "side_by_side",
]
