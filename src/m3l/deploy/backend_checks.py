"""What :class:`m3l.deploy.backends.InferenceBackend` judges its inputs and its pick by: whether
an input is representative enough to pick a backend (and calibrate int8) on, and whether a
candidate's output reproduces the eager fp32 one.

A folder may start with thumbnails or black frames: a 1x1 crop calibrates int8 on one pixel and
a flat one says nothing about the error of bf16 on photos (both were kept on such a first
input, and ruined every photo after it). So the pick waits, running eager fp32, for the first
input of at least :data:`MIN_PIXELS` pixels whose crop is not flat (:data:`MIN_STD`). After
it, every :data:`CHECK_EVERY`-th call compares the pick with eager fp32 on a crop again.
"""

from __future__ import annotations

import math

import torch

#: an input with fewer pixels (64 x 64) is no ground to pick on, and runs on eager fp32
MIN_PIXELS = 64 * 64
#: an input whose crop has a smaller standard deviation (on [0, 1]; 2.5 grey levels of 255) is
#: flat (a black or a blank frame), no ground to pick on, and runs on eager fp32
MIN_STD = 0.01
#: after the pick, every this-many-th call runs eager fp32 on a crop of its input (at most
#: 128 x 128) next to the pick: on 512 x 512 photos (a crop is 1/16 of one) that is estimated
#: at 2-3% of the run's time
CHECK_EVERY = 8


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of ``a`` against ``b`` on [0, 1], in dB (inf when equal)."""
    mse = float(torch.mean((a.float() - b.float()) ** 2))
    return math.inf if mse == 0 else -10 * math.log10(mse)


def unrepresentative(x: torch.Tensor, side: int) -> str:
    """Why ``x`` (``(B, C, H, W)`` or ``(B, T, C, H, W)``) is no input to pick a backend or
    calibrate int8 on, judged on its first image's top-left ``side`` x ``side`` crop (where the
    pick's probe comes from); "" when it is one."""
    h, w = x.shape[-2:]
    if h * w < MIN_PIXELS:
        return f"a {h}x{w} input, under {MIN_PIXELS} pixels"
    std = float(x[:1, ..., :side, :side].float().std())
    if not std >= MIN_STD:  # NaN too
        return f"a flat input (std {std:.3g} < {MIN_STD:g})"
    return ""


def compare(
    precision: str, out: torch.Tensor, reference: torch.Tensor, min_psnr: float, tolerance: float
) -> tuple[str, str]:
    """What ``out`` shows against the eager fp32 ``reference``, and why it fails ("" when it
    holds): bf16 and int8 to ``min_psnr`` dB PSNR (on [0, 1]), fp32 to ``tolerance`` max |diff|."""
    if out.shape != reference.shape:
        return "", f"output shape {tuple(out.shape)} vs eager {tuple(reference.shape)}"
    if precision in ("bf16", "int8"):
        value = psnr_db(out.clamp(0, 1), reference.clamp(0, 1))
        check = f"PSNR {value:.1f} dB vs fp32"
        return check, (f"{check}, below {min_psnr:.0f} dB" if not value >= min_psnr else "")
    diff = float((out - reference).abs().max())
    return f"max |diff| {diff:.1g}", (f"max |diff| {diff:.2g} > {tolerance:g}" if not diff <= tolerance else "")


def closeness_in_words(check: str, min_psnr: float) -> str:
    """:func:`compare`'s figure as a user reads it: how close an output is to eager fp32's."""
    words = check.split()
    if check.startswith("max |diff|"):
        return f"its output is within {words[-1]} of fp32's (largest difference, on a 0-1 scale)"
    if check.startswith("PSNR"):
        return f"its output is {words[1]} dB PSNR from fp32's (at least {min_psnr:.0f} dB required)"
    return f"its output: {check}" if check else "its output is fp32's"
