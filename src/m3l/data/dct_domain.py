"""DCT-domain data for nets that read JPEG files as coefficients (QGAC): training samples made
by real JPEG encoding, and the correction of folders of real JPEG files.

Every sample carries the decoded image as ``input`` (m3l's exact libjpeg decode, see
:mod:`m3l.data.jpeg`: what PSNR-of-the-input and the writers use) and, in ``meta``, what the
net reads (see :func:`jpeg_net_inputs`): ``dct_y``, ``dct_c``, ``qt``, ``chroma_factor``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from m3l.data.correction import scan_correction_inputs
from m3l.data.datamodules import RestorationDataModule
from m3l.data.datasets import relative_path
from m3l.data.degradations import Degradation, Meta, _check_range, _randint, _scalar, _uniform
from m3l.data.failures import Failure, record_failure
from m3l.data.jpeg import SUBSAMPLING, JPEGCoefficients, encode_jpeg, read_jpeg_coefficients
from m3l.data.dct import block_idct_islow
from m3l.errors import ConfigError, MediaReadError, ShapeError

log = logging.getLogger(__name__)

# ITU-T T.81 Annex K tables (row-major), the base of libjpeg's quality scaling
ANNEX_K_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
ANNEX_K_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip


def quality_tables(quality: int) -> tuple[list[int], list[int]]:
    """libjpeg's luma and chroma tables at ``quality`` (1..100, baseline: clamped to 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple([min(255, max(1, (v * scale + 50) // 100)) for v in base] for base in (ANNEX_K_LUMA, ANNEX_K_CHROMA))  # type: ignore[return-value]


def jpeg_net_inputs(jpeg: JPEGCoefficients, channels: int) -> tuple[torch.Tensor, Meta]:
    """The decoded image ``(channels, H, W)`` in [0, 1] and the net's inputs:

    - ``dct_y`` ``(1, H8, W8)``: dequantized Y coefficients on the [0, 1] scale (``/ 255``);
    - ``dct_c`` ``(2, Hc, Wc)`` (``channels == 3``): the same for Cb, Cr at their resolution
      (zeros, i.e. neutral colour, for a gray file);
    - ``qt`` ``(2, 8, 8)``: the luma and chroma tables (the luma table twice for gray files);
    - ``chroma_factor`` ``(2,)`` (``channels == 3``): luma samples per chroma sample (v, h).

    ``channels=1`` on a colour file uses its Y alone (as libjpeg decodes it to gray).
    """
    if channels not in (1, 3):
        raise ConfigError(f"jpeg_net_inputs: channels must be 1 or 3, got {channels}; set data.channels to 1 or 3")
    h, w = jpeg.height, jpeg.width
    dct_y = jpeg.dequantized(0).to(torch.float32)[None] / 255
    luma = jpeg.tables[0].to(torch.float32)
    chroma = jpeg.tables[1].to(torch.float32) if jpeg.is_color else luma
    meta: Meta = {"dct_y": dct_y, "qt": torch.stack([luma, chroma])}
    if channels == 1:
        pixels = block_idct_islow(jpeg.dequantized(0))[None, :h, :w] if jpeg.is_color else jpeg.to_pixels()
        return pixels.to(torch.float32) / 255, meta
    if jpeg.is_color:
        meta["dct_c"] = torch.stack([jpeg.dequantized(1), jpeg.dequantized(2)]).to(torch.float32) / 255
        pixels = jpeg.to_pixels()
    else:
        meta["dct_c"] = torch.zeros(2, *dct_y.shape[-2:])
        pixels = jpeg.to_pixels().expand(3, -1, -1)
    meta["chroma_factor"] = torch.tensor(jpeg.chroma_factor, dtype=torch.float32)
    return pixels.to(torch.float32) / 255, meta


class RealJPEG(Degradation):
    """Real JPEG encoding (libjpeg through Pillow) read back as coefficients: the DCT-domain
    counterpart of :class:`m3l.data.degradations.JPEG`.

    ``quality`` or ``quality_range`` picks libjpeg's tables; ``table_jitter > 0`` makes custom
    tables: each entry multiplied by ``exp(u)``, ``u`` uniform in ``[-jitter, jitter]``, with
    probability ``custom_tables_p``, so a net learns to read the table rather than the quality.
    The metadata holds ``quality`` and the net inputs of :func:`jpeg_net_inputs`.
    """

    def __init__(
        self,
        quality: int | None = None,
        quality_range: Sequence[int] | None = None,
        chroma_subsampling: str = "4:2:0",
        table_jitter: float = 0.0,
        custom_tables_p: float = 0.5,
    ) -> None:
        _check_range("RealJPEG(quality, quality_range)", quality, quality_range)
        if chroma_subsampling not in SUBSAMPLING:
            raise ConfigError(
                f"RealJPEG: chroma_subsampling must be one of {sorted(SUBSAMPLING)}, got {chroma_subsampling!r}"
            )
        if table_jitter < 0 or not 0 <= custom_tables_p <= 1:
            raise ConfigError(
                f"RealJPEG: table_jitter must be >= 0 and custom_tables_p in [0, 1], got table_jitter={table_jitter}, "
                f"custom_tables_p={custom_tables_p}"
            )
        self.quality, self.quality_range, self.chroma_subsampling = quality, quality_range, chroma_subsampling
        self.table_jitter, self.custom_tables_p = float(table_jitter), float(custom_tables_p)

    def sample(self, generator: torch.Generator | None) -> dict[str, Any]:
        q = (
            _randint(int(self.quality_range[0]), int(self.quality_range[1]), generator)
            if self.quality_range is not None
            else int(self.quality)
        )  # type: ignore[index,arg-type]
        params: dict[str, Any] = {"quality": q}
        if self.table_jitter > 0 and _uniform(0, 1, generator) < self.custom_tables_p:
            jitter = (torch.rand(2, 64, generator=generator) * 2 - 1) * self.table_jitter
            base = torch.tensor(quality_tables(q), dtype=torch.float64)
            params["tables"] = (base * torch.exp(jitter.double())).round().clamp(1, 255).to(torch.int64).tolist()
        return params

    def apply(
        self, x: torch.Tensor, params: dict[str, Any], generator: torch.Generator | None
    ) -> tuple[torch.Tensor, Meta]:
        if x.dim() != 3 or x.shape[0] not in (1, 3):
            raise ShapeError(f"RealJPEG: expected one image (C, H, W) with C in (1, 3), got shape {tuple(x.shape)}")
        tables = params.get("tables")
        if tables is not None:
            data = encode_jpeg(x, tables=tables[: 1 if x.shape[0] == 1 else 2], subsampling=self.chroma_subsampling)
        else:
            data = encode_jpeg(x, quality=params["quality"], subsampling=self.chroma_subsampling)
        pixels, meta = jpeg_net_inputs(read_jpeg_coefficients(data), x.shape[0])
        meta["quality"] = _scalar(params["quality"])
        return pixels, meta

    def defaults(self) -> Meta:
        return {"quality": _scalar(100)}


class JPEGCorrectionDataset(Dataset):
    """The JPEG files under ``path`` (or ``path`` itself) as net inputs, each with its own
    coefficients and quantization tables. Anything else (PNGs, videos, CMYK or corrupt JPEGs)
    is left out and listed in ``failures`` with the reason."""

    def __init__(self, path: str | os.PathLike[str], channels: int = 3) -> None:
        self.failures: list[Failure] = []
        self.root, images, videos = scan_correction_inputs(path, self.failures)
        self.channels = int(channels)
        for video in videos:
            record_failure(self.failures, video, "a video: QGAC corrects JPEG image files from their DCT coefficients")
        self.items: list[tuple[Any, str]] = []
        for image in images:
            try:
                read_jpeg_coefficients(image)
            except MediaReadError as err:
                reason = err.reason
                if reason.startswith("not a JPEG"):
                    reason += (
                        "; correct it with a pixel-domain model (e.g. model=ffdnet_jpeg_color checkpoint=pretrained)"
                    )
                record_failure(self.failures, image, reason)
                continue
            self.items.append((image, relative_path(image, self.root)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, relpath = self.items[index]
        jpeg = read_jpeg_coefficients(path)
        pixels, meta = jpeg_net_inputs(jpeg, self.channels)
        log.info(
            "%s: JPEG %dx%d %s, luma table closest to libjpeg quality %d",
            relpath,
            jpeg.width,
            jpeg.height,
            jpeg.subsampling if jpeg.is_color else "gray",
            effective_quality(jpeg.tables[0]),
        )
        return {
            "input": pixels,
            "meta": meta,
            "relpath": relpath,
            "mode": "RGB" if self.channels == 3 and jpeg.is_color else "L",
            "bit_depth": 8,
            "height": jpeg.height,
            "width": jpeg.width,
            "alpha": None,
        }


def collate_jpeg_correction(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``input`` and ``meta`` (items of one size) and keep the rest as lists."""
    batch: dict[str, Any] = {
        "input": torch.stack([i["input"] for i in items]),
        "meta": default_collate([i["meta"] for i in items]),
    }
    for key in items[0]:
        if key not in batch:
            batch[key] = [i.get(key) for i in items]
    return batch


class JPEGCoefficientDataModule(RestorationDataModule):
    """:class:`~m3l.data.datamodules.RestorationDataModule` whose degradation is
    :class:`RealJPEG` (the training data) and whose ``correct_dir`` is read as JPEG
    coefficients (:class:`JPEGCorrectionDataset`, one file per batch)."""

    def setup_predict(self) -> None:
        if self.correct_dir is None:
            raise ConfigError("nothing to correct: set data.correct_dir to a folder of JPEG files or one JPEG file")
        self.predict_sets = [JPEGCorrectionDataset(self.correct_dir, self.channels)]

    def predict_dataloader(self) -> DataLoader:
        if not self.predict_sets:
            self.setup_predict()
        return DataLoader(
            self.predict_sets[0],
            batch_size=1,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_jpeg_correction,
        )


def effective_quality(table: torch.Tensor) -> float:
    """The libjpeg quality whose luma table is closest (in log ratio) to ``table``: a label for logs."""
    best, best_err = 50, math.inf
    for q in range(1, 101):
        ref = torch.tensor(quality_tables(q)[0], dtype=torch.float64)
        err = float((torch.log(table.flatten().double()) - torch.log(ref)).abs().mean())
        if err < best_err:
            best, best_err = q, err
    return float(best)
