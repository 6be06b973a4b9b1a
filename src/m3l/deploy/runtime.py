"""Run an exported m3l model with minimal dependencies.

ONNX artifacts need only numpy, Pillow and onnxruntime (no torch, Lightning or Hydra);
``.pt2`` and TorchScript artifacts need torch only. Videos need PyAV (``av``). Images are
corrected like ``python -m m3l.run.correct``: padded to the net's multiple, cut into the same
tiles (:class:`m3l.models.tiling.TiledPredictor`'s layout and blending, here in numpy),
clamped to [0, 1], and written under the output folder at each input's relative path
(``.png`` by default, gray stays gray, alpha is put back, existing files are never replaced
unless asked)::

    python -m m3l.deploy.runtime model.onnx photos/ corrected/
    python -m m3l.deploy.runtime ffdnet.onnx noisy.png out/ --sigma 25

This module imports nothing from m3l, so it also runs as a single file
(``python runtime.py ...``) next to an artifact and its ``.json`` metadata. It is long on
purpose: being one self-contained file is its job, so reading, tiling, running and writing
all live here.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import struct
import sys
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger("m3l.deploy.runtime")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v"})
#: Pillow modes that hold one (gray) plane; the one copy (m3l.data.io re-exports it)
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
#: images written behind the net at most by :func:`correct_path` (each holds its output)
WRITES_AHEAD = 2


class RuntimeInputError(ValueError):
    """An artifact, a metadata file or an input the runtime cannot use, with what to do."""


# ---------------------------------------------------------------------------- rules shared with m3l
# This module imports nothing from m3l, so the rules that `correct` and the runtime must apply
# alike live here, and m3l.data imports them from here: one copy, also in a lone runtime.py.

#: the most pixels (width x height) an image or video frame may have to be decoded; None:
#: ``$M3L_MAX_IMAGE_PIXELS``, else Pillow's default (89,478,485, about 9459 x 9459)
MAX_IMAGE_PIXELS: int | None = None
MAX_IMAGE_PIXELS_ENV = "M3L_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS's default


class ImageTooLargeError(ValueError):
    """An image (or video frame) whose header gives more pixels than the limit."""


class OutputPathError(ValueError):
    """An output path that is, or lies inside, an input (file or folder)."""


def max_image_pixels() -> int:
    """The pixel limit in force: :data:`MAX_IMAGE_PIXELS`, else ``$M3L_MAX_IMAGE_PIXELS``,
    else Pillow's default."""
    if MAX_IMAGE_PIXELS is not None:
        return int(MAX_IMAGE_PIXELS)
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(
            f"{MAX_IMAGE_PIXELS_ENV}={text!r} is not a positive whole number of pixels; set it to e.g. "
            f"{2 * DEFAULT_MAX_IMAGE_PIXELS} or unset it for the default {DEFAULT_MAX_IMAGE_PIXELS}."
        )
    return value


def check_image_pixels(width: int, height: int) -> None:
    """Refuse, from the header's size and before any decoding, an image over the limit
    (a decompression bomb: a small file that decodes to gigabytes)."""
    limit = max_image_pixels()
    if int(width) * int(height) > limit:
        raise ImageTooLargeError(
            f"{width}x{height} = {int(width) * int(height):,} pixels is over the limit of {limit:,} pixels "
            "(a guard against decompression bombs), so it was not decoded. If the image is genuine, "
            f"raise the limit with the environment variable {MAX_IMAGE_PIXELS_ENV}=N."
        )


def png_header(path: str | os.PathLike[str]) -> tuple[int, int, int, int] | None:
    """(bit depth, colour type, width, height) from a PNG's IHDR; None for other files."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return head[24], head[25], width, height
    return None


def open_image_checked(path: Path) -> Image.Image:
    """``Image.open`` (header only) with the size checked against the pixel limit."""
    header = png_header(path)
    if header is not None:
        check_image_pixels(header[2], header[3])
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:  # Pillow's own refusal, at twice its limit
        raise ImageTooLargeError(
            f"{exc} It was not decoded (Pillow refuses images over twice PIL.Image.MAX_IMAGE_PIXELS "
            f"whatever {MAX_IMAGE_PIXELS_ENV} says; raise that too if the image is genuine)."
        ) from exc
    try:
        check_image_pixels(*img.size)
    except BaseException:
        img.close()
        raise
    return img


def walk_files(root: str | os.PathLike[str]) -> list[Path]:
    """The visible files under the folder ``root``, recursively, in a stable order (hidden
    files and folders skipped). Symlinked folders are followed, each real folder once, so a
    symlink loop (``a/loop -> a``) is walked once instead of ~40 levels deep."""
    files: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # reached again through a symlink: already listed
            log.info("%s: skipped, the same folder as one already listed (%s)", dirpath, real)
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


def temp_file_beside(path: str | os.PathLike[str], suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``path``'s folder, with the permissions the user's umask gives a
    new file (mkstemp makes 0600; an output renamed from it would stay private)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)
    return fd, name


def check_output_paths(
    inputs: Iterable[str | os.PathLike[str]],
    root: str | os.PathLike[str],
    outputs: Iterable[str | os.PathLike[str]] = (),
    allow_inside_input: bool = False,
) -> None:
    """The one rule of ``correct`` and of the runtime on where outputs may go.

    The output folder ``root`` may not be an input folder or lie inside one, nor be the folder
    of an input file (a folder beside that file, ``photo.png`` into ``out/``, is fine: the
    input is that one file), so that neither outputs nor ``failures.tsv`` land among the
    inputs; ``allow_inside_input`` lifts that part only. No output file in ``outputs`` may be
    an input file or lie inside an input folder (unless allowed), ever. Paths are compared resolved (symlinks followed). Raises
    :class:`OutputPathError` naming both paths.
    """
    sources = [Path(p).expanduser() for p in inputs]
    sources = [source for source in sources if source.exists()]  # a missing input has nothing to protect
    trees = [(source, source.resolve()) for source in sources if source.is_dir()]
    if not allow_inside_input:
        root_real = Path(root).expanduser().resolve()
        for source in sources:
            if not source.is_dir() and root_real == source.resolve().parent:
                raise OutputPathError(
                    f"the output folder {root} is the input folder of {source} (the file's own folder): outputs and "
                    "failures.tsv would land among your files. Pick another output folder (a new one beside the file is fine)."
                )
        for source, tree in trees:
            if root_real == tree or tree in root_real.parents:
                where = "is" if root_real == tree else "is inside"
                raise OutputPathError(
                    f"the output folder {root} {where} the input folder {tree} (input: {source}): outputs "
                    "and failures.tsv could mix with or replace the inputs. Pick an output folder outside it."
                )
    files = {source.resolve() for source in sources if not source.is_dir()}
    for out in outputs:
        real = Path(out).expanduser().resolve()
        if real in files:
            raise OutputPathError(
                f"the output {out} is the input file {real}; it would be replaced. "
                "Pick an output folder outside the input folder."
            )
        if not allow_inside_input:
            for source, tree in trees:
                if tree in real.parents:
                    raise OutputPathError(
                        f"the output {out} would be written inside the input folder {tree} "
                        f"(input: {source}); pick an output folder outside it."
                    )


FAILURES_FILENAME = "failures.tsv"


def _file_text(text: str) -> str:
    """``text`` as it can be written with ``surrogateescape``: a non-UTF-8 file name's bytes
    (``os.fsdecode`` keeps them as lone surrogates) stay as they are; any other lone surrogate
    becomes a backslash escape."""
    try:
        text.encode("utf-8", "surrogateescape")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def format_failures(failures: Iterable[tuple[str, str]]) -> bytes:
    """The ``failures.tsv`` of ``(path, reason)`` pairs: a ``path<TAB>reason`` header, then
    one row a failure, written by Python's ``csv`` module (tab-delimited, ``"``-quoted where a
    field holds a tab, a newline or a quote, so every file name round-trips). Reasons are put
    on one line. Paths are written as the file system's bytes: a name that is not UTF-8 keeps
    its bytes; read the file with ``csv.reader(open(path, newline="", encoding="utf-8",
    errors="surrogateescape"), delimiter="\\t")`` and ``os.fsencode(row[0])`` gives them back."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    quoting = csv.writer(buffer, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_ALL)  # a name with a CR
    writer.writerow(["path", "reason"])
    for path, reason in failures:
        row = [_file_text(os.fspath(path)), _file_text(" ".join(str(reason).split()))]
        (quoting if "\r" in row[0] else writer).writerow(row)
    return buffer.getvalue().encode("utf-8", "surrogateescape")


def write_failures_file(
    root: str | os.PathLike[str], failures: Sequence[tuple[str, str]], name: str = FAILURES_FILENAME
) -> Path | None:
    """Write :func:`format_failures` to ``root/name`` atomically (temp file and rename) and
    return its path; when it cannot be written (a full disk, a read-only folder), log the whole
    list instead, with the reason, and return None. The one writer of ``correct`` and the runtime."""
    target = Path(root) / name
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file_beside(target, ".part")
        with open(fd, "wb") as fh:
            fh.write(format_failures(failures))
        os.replace(tmp, target)
        return target
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        listing = (
            format_failures(failures).decode("utf-8", "backslashreplace").replace("\n", "\n  ")
        )  # any log takes it
        log.error(
            "could not write the list of failures to %s (%s); here it is:\n  %s",
            target,
            exc.strerror or exc,
            listing.rstrip(),
        )
        return None


# the Daubechies-2 decomposition high-pass filter (pywt.Wavelet("db2").dec_hi), as in m3l.models.noise_level
_DB2_HIGH = (-0.48296291314469025, 0.836516303737469, -0.22414386804185735, -0.12940952255092145)
_GAUSS_Q75 = 0.6744897501960817  # scipy.stats.norm.ppf(0.75)


def estimate_noise_sigma(x: np.ndarray) -> float:
    """The Gaussian noise level (on [0, 1]) of one image ``(C, H, W)`` on [0, 1]: numpy's copy of
    :func:`m3l.models.noise_level.estimate_noise_sigma`, which ``correct`` uses (the tests hold
    the two equal): the median of the finest diagonal Daubechies-2 wavelet coefficients over
    0.6745 (exact zeros left out, the lower median), averaged over the channels."""
    if x.ndim != 3 or x.shape[1] < 8 or x.shape[2] < 8:
        raise RuntimeInputError(
            f"the noise level is estimated on images of at least 8x8 pixels, got {'x'.join(map(str, x.shape[1:]))}; "
            "pass --sigma (0-255 scale) for tiny images."
        )
    g = np.asarray(_DB2_HIGH, dtype=np.float64)[::-1]
    kernel = g[:, None] * g[None, :]
    sigmas = []
    for plane in np.asarray(x, dtype=np.float64):
        windows = np.lib.stride_tricks.sliding_window_view(plane, (4, 4))[::2, ::2]
        values = np.abs(np.einsum("ijab,ab->ij", windows, kernel)).ravel()
        values = values[values != 0]  # exactly flat regions carry no information
        if values.size == 0:
            sigmas.append(0.0)
            continue
        k = (values.size - 1) // 2  # the lower median, as torch.median
        sigmas.append(float(np.partition(values, k)[k]) / _GAUSS_Q75)
    return float(np.float32(np.mean(sigmas)))


# ---------------------------------------------------------------------------- tiling (numpy)


def pad_to_size(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad the last two axes at the bottom/right: reflection, or edge for tiny inputs
    (the rule of :func:`m3l.models.tiling.pad_to_size`)."""
    h, w = x.shape[-2:]
    ph, pw = height - h, width - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)], mode=mode)


def pad_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
    h, w = x.shape[-2:]
    return pad_to_size(x, h + (-h) % multiple, w + (-w) % multiple)


def _layout(length: int, tile: int, overlap: int, multiple: int) -> tuple[list[int], int]:
    units = -(-length // multiple)
    tile_u, overlap_u = tile // multiple, -(-overlap // multiple)
    if units <= tile_u:
        return [0], units * multiple
    n = math.ceil((units - overlap_u) / (tile_u - overlap_u))
    size_u = min(tile_u, math.ceil((units + (n - 1) * overlap_u) / n))
    return [(i * (units - size_u)) // (n - 1) * multiple for i in range(n)], size_u * multiple


def _ramp(n: int, blend: str) -> np.ndarray:
    t = (np.arange(n, dtype=np.float64) + 1) / (n + 1)
    if blend == "gaussian":
        erf = np.vectorize(math.erf, otypes=[np.float64])  # also on an empty ramp (tiles that just touch)
        return 0.5 * (1 + erf((t - 0.5) / (math.sqrt(2) / 6)))
    return t


def _profiles(starts: list[int], size: int, overlap: int, blend: str) -> list[np.ndarray]:
    margin = overlap // 4
    out = []
    for i, s in enumerate(starts):
        w = np.ones(size, dtype=np.float64)
        for side, neighbour in (("left", i - 1), ("right", i + 1)):
            if neighbour < 0 or neighbour >= len(starts):
                continue
            shared = size - abs(starts[neighbour] - s)
            if blend == "none":
                body = np.zeros(shared // 2 if side == "left" else shared - shared // 2)
            else:
                body = np.concatenate([np.zeros(margin), _ramp(shared - 2 * margin, blend)])
            n = body.size
            if side == "left":
                w[:n] = np.minimum(w[:n], body)
            elif n:
                w[size - n :] = np.minimum(w[size - n :], body[::-1])
        out.append(w)
    return out


def tiled(
    fn: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    multiple: int = 1,
    tile_size: int = 512,
    overlap: int = 32,
    batch_size: int = 4,
    blend: str = "gaussian",
) -> np.ndarray:
    """:class:`m3l.models.tiling.TiledPredictor` on numpy: ``x`` is ``(C, H, W)`` or
    ``(T, C, H, W)``; ``fn`` maps a batch of padded tiles to ``(N, C, h, w)``."""
    tile = max(multiple, (tile_size // multiple) * multiple)
    if 2 * (-(-overlap // multiple) * multiple) >= tile:
        raise RuntimeInputError(f"tile size {tile_size} must be more than twice the overlap {overlap}.")
    h, w = x.shape[-2:]
    ys, th = _layout(h, tile, overlap, multiple)
    xs, tw = _layout(w, tile, overlap, multiple)
    wy, wx = _profiles(ys, th, overlap, blend), _profiles(xs, tw, overlap, blend)
    jobs = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    out: np.ndarray | None = None
    weight = np.zeros((h, w), dtype=np.float32)
    for first in range(0, len(jobs), batch_size):
        batch = jobs[first : first + batch_size]
        tiles = np.stack([pad_to_size(x[..., ys[i] : ys[i] + th, xs[j] : xs[j] + tw], th, tw) for i, j in batch])
        result = fn(np.ascontiguousarray(tiles, dtype=np.float32))
        if out is None:
            out = np.zeros((*result.shape[1:-2], h, w), dtype=np.float32)
        for k, (i, j) in enumerate(batch):
            y0, x0 = ys[i], xs[j]
            rows, cols = min(th, h - y0), min(tw, w - x0)
            win = (wy[i][:rows, None] * wx[j][None, :cols]).astype(np.float32)
            out[..., y0 : y0 + rows, x0 : x0 + cols] += result[k, ..., :rows, :cols] * win
            weight[y0 : y0 + rows, x0 : x0 + cols] += win
    assert out is not None
    return out / weight


def sliding_windows(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Centred windows ``(size, C, H, W)`` over a stream of frames, ends repeated (as
    :func:`m3l.models.tiling.sliding_windows`)."""
    half = size // 2
    it = iter(frames)
    first = next(it, None)
    if first is None:
        return
    window: deque[np.ndarray] = deque([first] * (half + 1), maxlen=size)
    count = 1
    for _ in range(half):
        frame = next(it, None)
        count += frame is not None
        window.append(window[-1] if frame is None else frame)
    yielded = 0
    for frame in it:
        yield np.stack(tuple(window))
        yielded += 1
        window.append(frame)
        count += 1
    while yielded < count:
        yield np.stack(tuple(window))
        yielded += 1
        window.append(window[-1])


# ---------------------------------------------------------------------------- the model


class ExportedModel:
    """An exported artifact and its metadata, callable on numpy batches.

    ``ExportedModel("dncnn.onnx")`` reads ``dncnn.onnx.json``; the backend follows the
    metadata's format (``onnx``: onnxruntime; ``pt2`` / ``torchscript``: torch).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RuntimeInputError(f"{self.path}: no such exported model (make one with python -m m3l.run.export).")
        meta_file = self.path.with_name(self.path.name + ".json")
        if not meta_file.is_file():
            raise RuntimeInputError(
                f"{meta_file} is missing: the runtime needs the metadata written next to the artifact by "
                "`python -m m3l.run.export` (keep NAME.EXT and NAME.EXT.json together)."
            )
        self.meta = read_metadata(meta_file)
        self.format = str(self.meta["format"])
        self.channels = int(self.meta["channels"])
        self.pad_multiple = int(self.meta["pad_multiple"])
        self.window = self.meta.get("temporal_window")
        self.conditions: list[str] = list(self.meta["conditions"])
        self.outputs: list[str] = list(self.meta["outputs"])
        expected = self.meta.get("sha256")
        if expected is not None:
            actual = sha256_of(self.path)
            if actual != expected.lower():
                raise RuntimeInputError(
                    f"{self.path}: its sha256 ({actual[:12]}...) is not the one {meta_file.name} records "
                    f"({expected[:12]}...): the file was changed or cut short after the export. Export it again "
                    "(python -m m3l.run.export) or copy the artifact whole."
                )
        self._run = self._load(threads)

    def _load(self, threads: int | None) -> Callable[..., list[np.ndarray]]:
        if self.format == "onnx":
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise RuntimeInputError("ONNX models need onnxruntime: pip install onnxruntime") from exc
            options = ort.SessionOptions()
            options.log_severity_level = 3
            if threads:
                options.intra_op_num_threads = threads
            try:
                session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
                raise RuntimeInputError(_unloadable(self.path, "ONNX", exc)) from exc
            names = [i.name for i in session.get_inputs()]
            return lambda *arrays: list(session.run(None, dict(zip(names, arrays))))
        if self.format in ("pt2", "torchscript"):
            try:
                import torch
            except ImportError as exc:
                raise RuntimeInputError(f"{self.format} models need torch; ONNX models do not.") from exc
            if threads:
                torch.set_num_threads(threads)
            try:
                if self.format == "pt2":
                    graph = torch.export.load(str(self.path)).module()
                else:
                    import warnings

                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        graph = torch.jit.load(str(self.path))
            except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
                raise RuntimeInputError(_unloadable(self.path, self.format, exc)) from exc

            def run(*arrays: np.ndarray) -> list[np.ndarray]:
                with torch.inference_mode():
                    out = graph(*(torch.from_numpy(a) for a in arrays))
                return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

            return run
        raise RuntimeInputError(f"{self.path}: unknown format {self.format!r} in its metadata.")

    def __call__(self, batch: np.ndarray, **conditions: float) -> list[np.ndarray]:
        """Run on a padded batch; conditions are scalars on [0, 1] (e.g. sigma=25/255)."""
        missing = [c for c in self.conditions if c not in conditions]
        if missing:
            raise RuntimeInputError(
                f"this model takes {', '.join(missing)} as input: pass --{missing[0]} (0-255 scale)."
            )
        extra = [np.full((batch.shape[0],), conditions[c], dtype=np.float32) for c in self.conditions]
        return self._run(np.ascontiguousarray(batch, dtype=np.float32), *extra)

    def conditions_for(self, x: np.ndarray, conditions: dict[str, float]) -> dict[str, float]:
        """``conditions`` with a missing ``sigma`` estimated on ``x`` (its centre frame for a
        window), as ``correct`` estimates it (:func:`estimate_noise_sigma`)."""
        if "sigma" in self.conditions and conditions.get("sigma") is None:
            frame = x[x.shape[0] // 2] if x.ndim == 4 else x
            conditions = {**conditions, "sigma": estimate_noise_sigma(frame)}
        return conditions

    def restore(
        self, x: np.ndarray, output: str | None = None, tiling: dict[str, Any] | None = None, **conditions: float
    ) -> np.ndarray:
        """Restore one image ``(C, H, W)`` (or window ``(T, C, H, W)``) on [0, 1], tiled like
        ``correct``; ``output`` picks a head of a multi-task model (the first by default)."""
        index = self.outputs.index(output) if output else 0
        conditions = self.conditions_for(x, conditions)
        options = {**(self.meta.get("tiling") or {}), **(tiling or {})}
        options = {k: options[k] for k in ("tile_size", "overlap", "batch_size", "blend") if k in options}

        def fn(tiles: np.ndarray) -> np.ndarray:
            return self(tiles, **conditions)[index]

        return np.clip(tiled(fn, x, multiple=self.pad_multiple, **options), 0.0, 1.0)


#: what each metadata key must hold: (test, what is expected); a key missing from the file takes
#: its default (files from older exports lack some), a key present must pass its test
_METADATA_KEYS: dict[str, tuple[Any, Callable[[Any], bool], str]] = {
    "format": (None, lambda v: v in ("onnx", "pt2", "torchscript"), '"onnx", "pt2" or "torchscript"'),
    "channels": (3, lambda v: type(v) is int and v in (1, 3), "1 or 3 (a whole number)"),
    "pad_multiple": (1, lambda v: type(v) is int and v >= 1, "a whole number >= 1"),
    "temporal_window": (None, lambda v: v is None or (type(v) is int and v >= 1), "null or a whole number >= 1"),
    "conditions": ([], lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of names"),
    "outputs": (
        ["output"],
        lambda v: isinstance(v, list) and v and all(isinstance(c, str) for c in v),
        "a non-empty list of names",
    ),
    "tiling": (
        None,
        lambda v: (
            v is None
            or (
                isinstance(v, dict)
                and all(type(v.get(k, 1)) is int and v.get(k, 1) >= 0 for k in ("tile_size", "overlap", "batch_size"))
            )
        ),
        "null or an object of whole numbers (tile_size, overlap, batch_size)",
    ),
    "sha256": (
        None,
        lambda v: v is None or (isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdefABCDEF" for c in v)),
        "the artifact's sha256 as 64 hex digits",
    ),
}


def read_metadata(meta_file: Path) -> dict[str, Any]:
    """The metadata beside an artifact, checked key by key (:data:`_METADATA_KEYS`); raises
    :class:`RuntimeInputError` naming the file, the key, what it holds and what it should."""
    again = "Export the model again (python -m m3l.run.export) to get a valid one."
    try:
        meta = json.loads(meta_file.read_bytes())
    except (ValueError, OSError) as exc:
        raise RuntimeInputError(f"{meta_file} is not valid JSON ({exc}). {again}") from exc
    if not isinstance(meta, dict):
        raise RuntimeInputError(
            f"{meta_file} holds a JSON {type(meta).__name__}, not the object of metadata the export writes. {again}"
        )
    if "format" not in meta:
        raise RuntimeInputError(f'{meta_file} has no "format" key (onnx, pt2 or torchscript). {again}')
    for key, (default, test, expected) in _METADATA_KEYS.items():
        meta.setdefault(key, default)
        if not test(meta[key]):
            raise RuntimeInputError(
                f'{meta_file}: "{key}" must be {expected}, got {json.dumps(meta[key])[:80]}. {again}'
            )
    return meta


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in chunks: m3l's one file hash (``m3l.weights.hub.sha256_of``, the
    export's metadata, the ONNX cache's check), here because the runtime imports nothing from m3l."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unloadable(path: Path, kind: str, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"{path}: not a loadable {kind} model ({type(exc).__name__}: {first[:200]}); the file may be "
        "damaged or cut short. Export it again (python -m m3l.run.export)."
    )


# ---------------------------------------------------------------------------- files


def read_image(path: Path, channels: int) -> tuple[np.ndarray, dict[str, Any]]:
    """``(C, H, W)`` float32 on [0, 1] with the file's mode, bit depth and alpha."""
    try:
        with open_image_checked(path) as img:
            img.load()
            mode = img.mode
            alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0 if "A" in img.getbands() else None
            if mode.startswith("I;16") or mode == "I":
                array = np.asarray(img, dtype=np.float32) / 65535.0
                depth = 16
                array = array[None]
            else:
                depth = 8
                array = np.asarray(img.convert("L" if mode in GRAY_MODES else "RGB"), dtype=np.float32) / 255.0
                array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    except ImageTooLargeError as exc:
        raise RuntimeInputError(f"{path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types (DecompressionBombError, ...)
        detail = str(exc).replace(repr(str(path)), "it").replace(str(path), "it")  # the path once, in front
        raise RuntimeInputError(f"{path}: not a readable image ({type(exc).__name__}: {detail})") from exc
    if array.shape[0] != channels:
        array = (
            np.repeat(array, 3, axis=0)
            if channels == 3
            else (0.299 * array[0:1] + 0.587 * array[1:2] + 0.114 * array[2:3])
        )
    return np.ascontiguousarray(array, dtype=np.float32), {"mode": mode, "bit_depth": depth, "alpha": alpha}


def write_image(path: Path, x: np.ndarray, info: dict[str, Any], overwrite: bool = False) -> Path:
    """Write ``(C, H, W)`` like :class:`m3l.data.serializers.ImageSerializer` (atomically)."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    if info.get("mode") in GRAY_MODES and x.shape[0] == 3:
        x = 0.299 * x[0:1] + 0.587 * x[1:2] + 0.114 * x[2:3]
    suffix = path.suffix.lower()
    sixteen = info.get("bit_depth") == 16 and x.shape[0] == 1 and suffix in (".png", ".tif", ".tiff")
    peak, dtype = (65535.0, np.uint16) if sixteen else (255.0, np.uint8)
    array = np.round(np.clip(x, 0, 1) * peak).astype(dtype).transpose(1, 2, 0)
    alpha = info.get("alpha")
    if alpha is not None and not sixteen and suffix in (".png", ".tif", ".tiff", ".webp"):
        array = np.concatenate([array, np.round(alpha * 255).astype(np.uint8)[..., None]], axis=2)
    array = array[..., 0] if array.shape[2] == 1 else array
    img = Image.fromarray(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path, path.suffix)
    os.close(fd)
    try:
        img.save(tmp, format=Image.registered_extensions().get(suffix))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _frames(path: Path, channels: int) -> tuple[Iterator[np.ndarray], float]:
    try:
        import av
    except ImportError as exc:
        raise RuntimeInputError(f"{path}: videos need PyAV: pip install av") from exc
    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - FFmpeg raises several types
        raise RuntimeInputError(f"{path}: not a readable video ({type(exc).__name__}: {exc})") from exc
    try:
        if not container.streams.video:
            raise RuntimeInputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        check_image_pixels(stream.codec_context.width, stream.codec_context.height)
    except (RuntimeInputError, ImageTooLargeError) as exc:
        container.close()
        raise RuntimeInputError(str(exc) if isinstance(exc, RuntimeInputError) else f"{path}: {exc}") from exc
    fps = float(stream.average_rate or 25)

    def gen() -> Iterator[np.ndarray]:
        first: tuple[int, int] | None = None
        try:
            for index, frame in enumerate(container.decode(stream)):
                # each decoded frame, before it is converted: the header may not say the truth
                size = (frame.width, frame.height)
                try:
                    check_image_pixels(*size)
                except ImageTooLargeError as exc:
                    raise RuntimeInputError(f"{path}: frame {index}: {exc}") from exc
                first = first or size
                if size != first:
                    raise RuntimeInputError(
                        f"{path}: frame {index} is {size[0]}x{size[1]}, the video's first frame {first[0]}x{first[1]}: "
                        "a video whose frame size changes is not corrected (split it where the size changes)"
                    )
                rgb = frame.to_ndarray(format="rgb24").astype(np.float32).transpose(2, 0, 1) / 255.0
                yield rgb if channels == 3 else 0.299 * rgb[0:1] + 0.587 * rgb[1:2] + 0.114 * rgb[2:3]
        finally:
            container.close()

    return gen(), fps


def correct_video(model: ExportedModel, source: Path, target: Path, overwrite: bool = False, **options: Any) -> Path:
    """Correct every frame of a video (a window around it for video nets) into ``target``."""
    import av

    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    frames, fps = _frames(source, model.channels)
    inputs: Iterable[np.ndarray] = sliding_windows(frames, int(model.window)) if model.window else frames
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(target, target.suffix)
    os.close(fd)
    try:
        container = av.open(tmp, mode="w", format="matroska" if target.suffix == ".mkv" else None)
        stream = None
        for x in inputs:
            y = model.restore(x, **options)
            y = np.repeat(y, 3, axis=0) if y.shape[0] == 1 else y
            array = np.round(y * 255).astype(np.uint8).transpose(1, 2, 0)
            if stream is None:
                from fractions import Fraction

                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = array.shape[:2]
                odd = array.shape[0] % 2 or array.shape[1] % 2
                stream.pix_fmt = "yuv444p" if odd else "yuv420p"
                stream.options = {"crf": "18"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
        container.close()
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def check_output_writable(root: Path) -> None:
    """Make the output folder ``root`` and write (then delete) a file in it, before any work:
    an output that is a file, or a folder that cannot be written, is refused up front rather
    than after the net ran on every input. (Permission bits alone do not tell: root writes in
    read-only folders.)"""
    if root.exists() and not root.is_dir():
        raise RuntimeInputError(
            f"the output folder {root} is an existing file, not a folder; pass a folder (new or existing)."
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".m3l-write-check-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RuntimeInputError(
            f"the output folder {root} cannot be written ({exc.strerror or type(exc).__name__}); pick a folder you can "
            "write to, or fix its permissions."
        ) from exc


def correct_path(
    model: ExportedModel | str | os.PathLike[str],
    source: str | os.PathLike[str],
    root_dir: str | os.PathLike[str],
    format: str | None = "png",
    overwrite: bool = False,
    output: str | None = None,
    tiling: dict[str, Any] | None = None,
    **conditions: float,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Correct an image, a video or a folder (recursively) into ``root_dir``.

    Outputs keep each input's relative path (``format`` sets the suffix; None keeps the
    input's); videos become ``.mp4``. Returns (written files, failures as (path, reason));
    one bad file does not stop the others and failures are listed in ``root_dir/failures.tsv``.
    ``root_dir`` may not be or lie inside the input folder (the folder of an input file), and
    no output replaces an input (:func:`check_output_paths`, the rule ``correct`` applies too).
    """
    model = model if isinstance(model, ExportedModel) else ExportedModel(model)
    source, root = Path(source).expanduser(), Path(root_dir).expanduser()
    if not source.exists():
        raise RuntimeInputError(f"{source}: no such file or folder to correct.")
    base = source if source.is_dir() else source.parent
    try:
        check_output_paths([source], root)
    except OutputPathError as exc:
        raise RuntimeInputError(str(exc)) from exc
    files = [p for p in walk_files(source) if p.is_file()] if source.is_dir() else [source]
    files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise RuntimeInputError(f"{source}: no images or videos found (suffixes {', '.join(sorted(IMAGE_SUFFIXES))}).")
    check_output_writable(root)
    options = dict(output=output, tiling=tiling, **conditions)
    # as ImageSerializer.plan_names: inputs that would map to one output keep their suffix
    stems = [p.relative_to(base).with_suffix("").as_posix() for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    clashing = {stem for stem in stems if stems.count(stem) > 1}
    written: list[Path] = []
    failures: list[tuple[str, str]] = []
    errors = (RuntimeInputError, FileExistsError, OSError, ValueError)

    def failed(path: Path, exc: BaseException) -> None:
        reason = str(exc)
        reason = reason[len(f"{path}: ") :] if reason.startswith(f"{path}: ") else reason  # the path once
        log.error("%s: %s", path, reason)
        failures.append((str(path), reason))

    def collect(path: Path, job: Future) -> None:
        try:
            written.append(job.result())
        except errors as exc:
            failed(path, exc)

    def read_ahead(k: int) -> Future | None:
        path = files[k] if k < len(files) else None
        if path is None or path.suffix.lower() not in IMAGE_SUFFIXES or model.window:
            return None
        return reader.submit(read_image, path, model.channels)

    # the next image is decoded and the last ones encoded on threads while the net runs
    # (Pillow works without the GIL); at most one read ahead and WRITES_AHEAD writes wait
    writes: deque[tuple[Path, Future]] = deque()
    with (
        ThreadPoolExecutor(1, thread_name_prefix="m3l-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="m3l-write") as writer,
    ):
        upcoming = read_ahead(0)
        for k, path in enumerate(files):
            current, upcoming = upcoming, read_ahead(k + 1)
            rel = path.relative_to(base)
            try:
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    check_output_paths([source, path], root, [root / rel.with_suffix(".mp4")])
                    written.append(correct_video(model, path, root / rel.with_suffix(".mp4"), overwrite, **options))
                    continue
                if model.window:
                    raise RuntimeInputError("a video model corrects videos, not single images")
                suffix = f".{format.lstrip('.')}" if format else path.suffix
                if format and rel.with_suffix("").as_posix() in clashing and path.suffix.lower() != suffix:
                    rel = rel.with_name(rel.name + suffix)
                target = root / rel.with_suffix(suffix)
                check_output_paths([source, path], root, [target])  # never an input file, whatever --overwrite says
                x, info = current.result() if current is not None else read_image(path, model.channels)
                estimated = model.conditions_for(x, conditions)
                if estimated.get("sigma") is not None and conditions.get("sigma") is None:
                    log.info("%s: sigma %.2f/255 (estimated)", rel.as_posix(), 255 * estimated["sigma"])
                restored = model.restore(x, **{**options, **estimated})
                writes.append((path, writer.submit(write_image, target, restored, info, overwrite)))
            except errors as exc:
                failed(path, exc)
            while len(writes) > WRITES_AHEAD:
                collect(*writes.popleft())
        while writes:
            collect(*writes.popleft())
    if failures:  # the same failures.tsv as `correct` writes
        write_failures_file(root, failures)
    log.info("wrote %d file(s) under %s", len(written), root)
    return written, failures


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m m3l.deploy.runtime MODEL INPUT OUTPUT_DIR [options]``."""
    parser = argparse.ArgumentParser(prog="python -m m3l.deploy.runtime", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="exported model (.onnx, .pt2, .ts) with its .json metadata beside it")
    parser.add_argument("input", help="an image, a video or a folder (searched recursively)")
    parser.add_argument("output", help="folder for the corrected files (relative paths are kept)")
    parser.add_argument("--format", default="png", help="output image suffix (default png; 'keep' keeps the input's)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--sigma", type=float, help="noise level on the 0-255 scale, for models that take it")
    parser.add_argument("--head", help="output of a multi-task model to write (default: the first)")
    parser.add_argument("--tile-size", type=int, help="tile side (default: the model's)")
    parser.add_argument("--overlap", type=int, help="tile overlap (default: the model's)")
    parser.add_argument("--threads", type=int, help="CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tiling = {k: v for k, v in (("tile_size", args.tile_size), ("overlap", args.overlap)) if v}
    conditions = {"sigma": args.sigma / 255.0} if args.sigma is not None else {}
    try:
        model = ExportedModel(args.model, threads=args.threads)
        if args.head and args.head not in model.outputs:
            raise RuntimeInputError(f"--head {args.head}: the model's outputs are {', '.join(model.outputs)}")
        _, failures = correct_path(
            model,
            args.input,
            args.output,
            format=None if args.format == "keep" else args.format,
            overwrite=args.overwrite,
            output=args.head,
            tiling=tiling,
            **conditions,
        )
    except RuntimeInputError as exc:
        print(f"m3l.deploy.runtime: error: {exc}", file=sys.stderr)
        return 2
    if failures:  # each was logged with its reason as it happened: here only the count and the list
        listed = Path(args.output).expanduser() / "failures.tsv"
        print(
            f"m3l.deploy.runtime: {len(failures)} input(s) failed, each with its reason above; listed in {listed}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
