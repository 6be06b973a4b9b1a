"""Serializers: Lightning prediction writers that put restored images and videos on disk.

Outputs mirror the input's relative paths under ``root_dir``. Every write is atomic (temp file
and rename); an existing output is kept (and reported) unless ``overwrite=True``; ``root_dir``
equal to or inside the input tree is refused unless ``allow_inside_input=True``, and no output
ever replaces an input file (one rule with the runtime: :func:`m3l.deploy.runtime.check_output_paths`). Inputs and
outputs that failed are collected in :attr:`ImageSerializer.failures` and written to
``root_dir/failures.tsv`` at the end of prediction; the caller exits non-zero when the list is
not empty (see docs/correction.md).

Writing runs on a thread (:class:`m3l.data.writing.WriterThread`, ``write_ahead`` batches
queued at most) while the net computes the next batch; failures found there are listed the same.

Stopping: on SIGTERM (what a scheduler sends before its kill) or Ctrl+C the writer finishes
the batches already predicted, drops any partial video, lists every input not corrected in
``failures.tsv`` and stops with :class:`m3l.errors.CorrectionInterrupted` (exit status 143).
The same happens on any crash mid-run. A kill that gives no time (SIGKILL) can leave partial
``.<name>.<random>.part`` files: the next run writing into the same ``root_dir`` removes them
first. ``skip_existing=True`` keeps the outputs a stopped run finished (an empty or unreadable
one is written again) and corrects the rest.

The rules of the output folder (one run at a time, ``failures.tsv`` describing the last run,
a video failing part way leaving nothing, never a crop) are in :mod:`m3l.data.output_folder`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from m3l.data.correction import VideoCorrectionDataset
from m3l.data.failures import FAILURES_FILENAME, Failure, data_failures, record_failure
from m3l.data.io import GRAY_MODES, VideoWriter, convert_channels, write_image
from m3l.data.output_folder import (
    VideoOutputs,
    check_writable,
    damaged_output,
    finish_failures_file,
    lock_output_folder,
)
from m3l.data.predictions import ACCEPTED_FORMS, prediction_items
from m3l.data.writing import FolderLock, WriterThread, remove_partial_files
from m3l.deploy.runtime import OutputPathError, check_output_paths
from m3l.errors import ConfigError, CorrectionInterrupted

__all__ = ["ACCEPTED_FORMS", "ImageSerializer", "VideoSerializer", "prediction_items", "remove_partial_files"]

log = logging.getLogger(__name__)

_SIXTEEN_BIT_FORMATS = frozenset({"png", "tif", "tiff"})


def _inputs(trainer: Any) -> list[Path]:
    """The correction input (``data.correct_dir``: a folder or a file), if the datamodule has one."""
    correct_dir = getattr(getattr(trainer, "datamodule", None), "correct_dir", None)
    return [] if correct_dir is None else [Path(correct_dir).expanduser()]


class ImageSerializer(BasePredictionWriter):
    """Write each predicted image under ``root_dir`` at the input's relative path.

    ``format``: output suffix (``png`` by default; None keeps the input's). ``bit_depth``:
    ``"input"`` (16-bit in, 16-bit out where the format allows) or 8/16. ``keep_mode``: write
    gray for gray inputs and put alpha back. Video frames reaching this writer become
    ``<relpath without suffix>/<frame:06d>.<format>``. ``write_ahead``: batches waiting for
    the writer thread at most while the net runs (0: write on the compute thread).
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        format: str | None = "png",
        bit_depth: int | str = "input",
        overwrite: bool = False,
        allow_inside_input: bool = False,
        keep_mode: bool = True,
        jpeg_quality: int = 95,
        skip_existing: bool = False,
        write_ahead: int = 2,
    ) -> None:
        super().__init__(write_interval="batch")
        if not isinstance(write_ahead, int) or write_ahead < 0:
            raise ConfigError(
                f"serializer.write_ahead must be an integer >= 0 (0: write on the compute thread), got {write_ahead!r}"
            )
        self.writer = WriterThread(write_ahead)
        if bit_depth not in ("input", 8, 16):
            raise ConfigError(f"serializer.bit_depth must be 'input', 8 or 16, got {bit_depth!r}")
        self.root_dir = Path(root_dir).expanduser()
        self.format = format.lower().lstrip(".") if format else None
        self.bit_depth, self.overwrite, self.allow_inside_input = bit_depth, overwrite, allow_inside_input
        self.keep_mode, self.jpeg_quality = keep_mode, jpeg_quality
        self.skip_existing = bool(skip_existing)
        if self.skip_existing and self.overwrite:
            raise ConfigError("serializer: skip_existing=true and overwrite=true contradict each other; choose one")
        self.failures: list[Failure] = []
        self.written: int = 0
        self.kept: int = 0
        self._planned: list[str] = []
        self._ready = False
        self._done: set[str] = set()
        self._clashing: set[str] = set()
        self._warned_gray = False
        self._inputs: list[Path] = []
        self._counted = 0  # numbered outputs written by this rank without batch indices
        self._lock: FolderLock | None = None
        self._videos = VideoOutputs()

    # -- checks -------------------------------------------------------------------------

    def check_root(self, inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> None:
        """Refuse a ``root_dir`` that is, or is inside, an input folder (for an input file, its
        folder) unless ``allow_inside_input``: the rule of
        :func:`m3l.deploy.runtime.check_output_paths`, shared with the runtime. Outputs are
        then checked one by one as they are written: none may replace an input file."""
        if inputs is None:
            return
        self._inputs = [Path(inputs)] if isinstance(inputs, (str, os.PathLike)) else [Path(p) for p in inputs]
        try:
            check_output_paths(self._inputs, self.root_dir, allow_inside_input=self.allow_inside_input)
        except OutputPathError as err:
            raise ConfigError(
                f"serializer.root_dir: {err} Choose another serializer.root_dir (outside data.correct_dir), "
                "or set serializer.allow_inside_input=true (outputs still never replace an input file)."
            ) from err

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.check_root(_inputs(trainer))
        self.check_writable()
        self.release_lock()  # a lock still held from an earlier predict of this serializer
        self._lock = lock_output_folder(self.root_dir, int(getattr(trainer, "global_rank", 0) or 0))
        if trainer.global_rank == 0:
            remove_partial_files(self.root_dir)
        sets = getattr(getattr(trainer, "datamodule", None), "predict_sets", [])
        relpaths = [item[1] for d in sets for item in getattr(d, "items", [])]
        self.plan_names(relpaths)
        self._ready = True
        self._planned = relpaths + [
            video[1] for d in sets if isinstance(d, VideoCorrectionDataset) for video in d.videos
        ]

    def check_writable(self) -> None:
        """Create ``root_dir`` and write a probe file in it, or a :class:`ConfigError` naming it."""
        check_writable(self.root_dir)

    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()  # idempotent

    def refused(self, path: Path, relpath: str) -> bool:
        """Record and refuse an output that the shared rule forbids (e.g. its input file)."""
        if not self._inputs:
            return False
        root = self._inputs[0]
        source = root / relpath if root.is_dir() else root
        try:
            check_output_paths(
                [*self._inputs, source], self.root_dir, [path], allow_inside_input=self.allow_inside_input
            )
        except OutputPathError as err:
            record_failure(self.failures, path, str(err))
            return True
        return False

    def plan_names(self, relpaths: Sequence[str]) -> None:
        """Note inputs that would map to the same output (``a.tif`` and ``a.webp`` both to
        ``a.png`` when ``format=png``): those keep their suffix in the name (``a.tif.png``)."""
        seen: dict[str, int] = {}
        for relpath in relpaths:
            stem = Path(relpath).with_suffix("").as_posix()
            seen[stem] = seen.get(stem, 0) + 1
        self._clashing = {stem for stem, count in seen.items() if count > 1}

    # -- writing ------------------------------------------------------------------------

    def output_path(self, relpath: str, frame_index: int | None = None) -> Path:
        rel = Path(relpath)
        suffix = f".{self.format}" if self.format else rel.suffix
        if self.format and rel.with_suffix("").as_posix() in self._clashing and rel.suffix.lower() != suffix:
            rel = rel.with_name(rel.name + suffix)
        if frame_index is not None:
            return self.root_dir / rel.with_suffix("") / f"{frame_index:06d}{suffix}"
        return self.root_dir / rel.with_suffix(suffix)

    def _layout(self, x: torch.Tensor, mode: str | None) -> torch.Tensor:
        if not self.keep_mode or mode is None:
            return x
        if mode in GRAY_MODES:
            return convert_channels(x, 1)
        if x.shape[0] == 1 and not self._warned_gray:
            self._warned_gray = True
            log.warning("the net outputs gray images for colour inputs (data.channels=1): writing gray files")
        return x

    def exists(self, path: Path) -> bool:
        """Whether ``path`` is already there: with ``skip_existing`` it is kept (complete, since
        every output is renamed into place whole, unless empty or unreadable: then it is written
        again, with a warning), otherwise it is a failure unless ``overwrite``."""
        if not path.exists() or self.overwrite:
            return False
        if self.skip_existing:
            damage = damaged_output(path)
            if damage is not None:
                log.warning(
                    "%s is %s: writing it again (serializer.skip_existing keeps complete outputs only)", path, damage
                )
                return False
            self.kept += 1
        else:
            record_failure(
                self.failures,
                path,
                "output exists; set serializer.overwrite=true to replace it, or serializer.skip_existing=true to keep it",
            )
        return True

    def write_image_item(self, x: torch.Tensor, item: dict[str, Any]) -> None:
        """Write one image ``(C, H, W)`` with the item's metadata (relpath, mode, bit depth, alpha)."""
        relpath = item["relpath"]
        path = self.output_path(relpath, item.get("frame_index"))
        if self.refused(path, relpath) or self.exists(path):
            return
        suffix = path.suffix.lower().lstrip(".")
        depth = item.get("bit_depth") or 8 if self.bit_depth == "input" else self.bit_depth
        depth = depth if suffix in _SIXTEEN_BIT_FORMATS else 8
        alpha = item.get("alpha") if self.keep_mode else None
        options = {"quality": self.jpeg_quality} if suffix in ("jpg", "jpeg", "webp") else {}
        try:
            write_image(path, self._layout(x, item.get("mode")), bit_depth=depth, alpha=alpha, **options)
        except (OSError, ValueError) as err:
            record_failure(self.failures, path, f"write failed ({type(err).__name__}: {err})")
            return
        self.written += 1
        if item.get("frame_index") is not None:
            self._videos.frames.setdefault(relpath, []).append(path)

    def write_item(self, x: torch.Tensor, item: dict[str, Any]) -> None:
        self.write_image_item(x, item)

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        outputs, items = prediction_items(prediction, batch)
        self.writer.submit(self._write_batch, outputs.detach().cpu(), items, trainer, batch_indices, dataloader_idx)
        if getattr(trainer, "received_sigterm", False):
            self.writer.flush()
            raise CorrectionInterrupted(f"correction stopped by SIGTERM; {self._progress()}")

    def _write_batch(
        self, outputs: torch.Tensor, items: list[dict[str, Any]], trainer: Any, batch_indices: Any, dataloader_idx: int
    ) -> None:
        for i, item in enumerate(items):
            if item.get("relpath") is None:
                item["relpath"] = self.numbered_name(trainer, batch_indices, i, dataloader_idx)
            elif not self._relative_inside(item):
                continue
            h, w = item.get("height"), item.get("width")
            x = outputs[i, :, :h, :w] if h and w else outputs[i]
            # a video's frames all have its first frame's size: another size fails the video, never a crop
            frame = item.get("frame_index")
            refusal = None if frame is None else self._videos.size_refusal(item["relpath"], frame, tuple(x.shape[-2:]))
            if refusal:
                record_failure(self.failures, self._source(item["relpath"]), refusal)
                self.drop_video(item["relpath"])
            if refusal is not None:
                continue
            self.write_item(x, item)
            if item.get("frame_index") is None:
                self._done.add(item["relpath"])

    def _source(self, relpath: str) -> Path:
        root = next(iter(self._inputs), None)
        return (root / relpath) if root is not None and root.is_dir() else (root or Path(relpath))

    def drop_video(self, relpath: str) -> None:
        """Remove what was written of the video ``relpath`` after it failed."""
        self._done.add(relpath)
        self.written -= self._videos.drop(relpath)

    def drop_failed_videos(self, input_failures: Sequence[Failure]) -> None:
        """Drop the outputs of the videos that the data side listed as failed part way (a frame
        over the pixel limit or of another size): a failed video leaves no output."""
        failed = {f.path for f in input_failures}
        for relpath in self._video_relpaths():
            if relpath not in self._videos.failed and str(self._source(relpath)) in failed:
                self.drop_video(relpath)
                log.warning("dropped the output of %s: the video failed part way", self._source(relpath))

    def _video_relpaths(self) -> list[str]:
        return [*self._videos.frames, *self._videos.finished]

    def _progress(self) -> str:
        kept = f", {self.kept} kept from an earlier run" if self.kept else ""
        return f"{self.written} file(s) written{kept} under {self.root_dir}"

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """A stop (SIGTERM, Ctrl+C) or a crash mid-run: drop partial outputs, list every input
        not corrected, write ``failures.tsv``."""
        if not self._ready:  # failed in setup (e.g. a bad root_dir): nothing was written
            self.release_lock()
            return
        if isinstance(exception, (CorrectionInterrupted, KeyboardInterrupt)):
            reason = "not corrected: the run was stopped (SIGTERM or Ctrl+C) before this input"
        else:
            reason = f"not corrected: the run failed before this input ({type(exception).__name__}: {exception})"
        try:
            self.writer.close()  # the batches already predicted are written (or fail) first
        except Exception as err:  # noqa: BLE001 - the run is failing already: say it, list the rest
            log.error("the writer thread failed: %s: %s", type(err).__name__, err)
        self.abort_open()
        failed = {Path(f.path) for f in self.failures}
        for relpath in self._planned:
            source = self._source(relpath)
            if relpath not in self._done and source not in failed:
                record_failure(self.failures, source, reason)
        self.finalize(data_failures(trainer), trainer.global_rank, trainer.world_size)
        self.release_lock()

    def abort_open(self) -> None:
        """Drop outputs still being written (none for images: each is written whole)."""

    def numbered_name(self, trainer: Any, batch_indices: Any, i: int, dataloader_idx: int) -> str:
        """``00000.png, 00001.png, ...`` for outputs whose batch names no file: the sample's index
        in its dataset (Lightning's ``batch_indices``: distinct on every DDP rank), else a count
        interleaved across ranks; a folder per predict dataloader when there are several."""
        if batch_indices is not None and i < len(batch_indices):
            index = int(batch_indices[i])
        else:
            world, rank = int(getattr(trainer, "world_size", 1) or 1), int(getattr(trainer, "global_rank", 0) or 0)
            index = self._counted * world + rank
            self._counted += 1
        loaders = getattr(trainer, "num_predict_batches", None) or [0]
        folder = f"dataloader_{dataloader_idx}/" if len(loaders) > 1 else ""
        return f"{folder}{index:05d}.{self.format or 'png'}"

    def _relative_inside(self, item: dict[str, Any]) -> bool:
        """A path from the prediction must stay under ``root_dir``: refused (and recorded) otherwise."""
        relpath = Path(str(item["relpath"]))
        if relpath.is_absolute() or ".." in relpath.parts:
            record_failure(
                self.failures,
                relpath,
                "the path predict_step gave leaves serializer.root_dir; give paths relative to it",
            )
            return False
        return True

    # -- end ------------------------------------------------------------------------------

    def finalize(self, input_failures: Sequence[Failure] = (), rank: int = 0, world_size: int = 1) -> list[Failure]:
        """Merge the data side's failures, write ``failures.tsv`` (rank 0; other ranks write
        ``failures.rank<N>.tsv`` for their own write failures) and return all failures.
        Called by Lightning at the end of ``predict``; calling it again does no harm. See
        :func:`m3l.data.output_folder.finish_failures_file`; nothing is written when setup did
        not finish (e.g. another run holds ``root_dir``)."""
        self.writer.close()
        self.drop_failed_videos(input_failures)
        for failure in input_failures:
            if failure not in self.failures:
                self.failures.append(failure)
        if not self._ready:
            return self.failures
        own = self.failures if rank == 0 else [f for f in self.failures if f not in input_failures]
        finish_failures_file(self.root_dir / (FAILURES_FILENAME if rank == 0 else f"failures.rank{rank}.tsv"), own)
        log.info("wrote %d file(s) under %s", self.written, self.root_dir)
        return self.failures

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # teardown runs even when the predict loop is skipped (no good input) or fails
        if stage == "predict":
            try:
                self.finalize(data_failures(trainer), trainer.global_rank, trainer.world_size)
            finally:
                self.release_lock()


class VideoSerializer(ImageSerializer):
    """Write video frames back as a video, streaming (frames are appended as they arrive).

    ``lossless=True`` writes FFV1 in ``.mkv``; otherwise H.264 at ``crf`` (suffix ``format``,
    default ``mp4``). The frame rate and size are the input's. Items that are not video frames
    are written as images (like :class:`ImageSerializer`).
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        lossless: bool = False,
        crf: int = 18,
        video_format: str = "mp4",
        overwrite: bool = False,
        allow_inside_input: bool = False,
        **image_options: Any,
    ) -> None:
        super().__init__(root_dir, overwrite=overwrite, allow_inside_input=allow_inside_input, **image_options)
        self.lossless, self.crf = lossless, int(crf)
        self.video_format = "mkv" if lossless else video_format.lower().lstrip(".")
        self._writers: dict[str, VideoWriter] = {}
        self._skipped: set[str] = set()

    def video_path(self, relpath: str) -> Path:
        return self.root_dir / Path(relpath).with_suffix(f".{self.video_format}")

    def write_item(self, x: torch.Tensor, item: dict[str, Any]) -> None:
        if item.get("frame_index") is None:
            self.write_image_item(x, item)
            return
        relpath = item["relpath"]
        if relpath in self._skipped:
            return
        writer = self._writers.get(relpath)
        if writer is None:
            path = self.video_path(relpath)
            if self.refused(path, relpath) or self.exists(path):
                self._skipped.add(relpath)
                self._done.add(relpath)
                return
            codec = "ffv1" if self.lossless else "h264"
            writer = self._writers[relpath] = VideoWriter(
                path, fps=float(item.get("fps") or 25.0), codec=codec, crf=self.crf
            )
        try:
            writer.write(self._layout(x, item.get("mode")))
        except Exception as err:  # noqa: BLE001 - one bad video must not stop the others
            writer.abort()
            del self._writers[relpath]
            self._skipped.add(relpath)
            record_failure(self.failures, self.video_path(relpath), f"write failed ({type(err).__name__}: {err})")
            self._done.add(relpath)
            return
        num_frames = item.get("num_frames")
        if num_frames is not None and int(item["frame_index"]) >= int(num_frames) - 1:
            self._close(relpath)

    def abort_open(self) -> None:
        for relpath, writer in list(self._writers.items()):
            writer.abort()
            del self._writers[relpath]
            log.warning("dropped the partial output %s: the run stopped before its last frame", writer.path)

    def drop_video(self, relpath: str) -> None:
        writer = self._writers.pop(relpath, None)
        if writer is not None:
            writer.abort()
        self._skipped.add(relpath)
        super().drop_video(relpath)

    def _video_relpaths(self) -> list[str]:
        return [*self._writers, *super()._video_relpaths()]

    def _close(self, relpath: str) -> None:
        writer = self._writers.pop(relpath)
        self._done.add(relpath)
        try:
            writer.close()
            self.written += 1
            self._videos.finished[relpath] = writer.path
        except Exception as err:  # noqa: BLE001
            record_failure(self.failures, writer.path, f"write failed ({type(err).__name__}: {err})")

    def finalize(self, input_failures: Sequence[Failure] = (), rank: int = 0, world_size: int = 1) -> list[Failure]:
        self.writer.close()  # the frames still queued go in first
        self.drop_failed_videos(input_failures)  # a video that failed part way leaves nothing
        for relpath in list(self._writers):
            self._close(relpath)  # fewer frames than the header said: keep what was decoded
        return super().finalize(input_failures, rank, world_size)
