"""Plug-and-play speed: each model's time per megapixel against one pass of its prior, in process.

    python benchmarks/pnp_speed.py [--side 1024] [--repeats 3] [--threads 2]

A solver costs about one prior pass per iteration plus its Fourier steps; this prints both,
measured in the same run on the same photo (a real photo from scikit-image, resized to
``side`` x ``side``): the median of ``repeats`` runs after one warm-up, eager PyTorch fp32 (the
``correct`` command may pick a faster backend for the prior passes). s/MP counts the output's
megapixels (super-resolution: the large image).
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from PIL import Image

from m3l.data.dct_domain import jpeg_net_inputs
from m3l.data.degradations import apply_blur, gaussian_kernel
from m3l.data.jpeg import read_jpeg_coefficients
from m3l.models.pnp import Blur, Downsample, PlugAndPlay
from m3l.models.pnp.jpeg import JPEGConstraint
from machine import cpu_line, median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import skimage.data

    side = args.side // 24 * 24
    photo = Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.BICUBIC)
    clean = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    mp = side * side / 1e6
    print(
        f"# pnp_speed, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_line()}, torch {torch.__version__}, "
        f"{args.threads} threads, {side}x{side} photo, median of {args.repeats}"
    )
    blurred = apply_blur(clean, gaussian_kernel(21, 2.0))
    deblur = PlugAndPlay(Blur("gaussian:2.0:21"))
    deblur.load_pretrained()
    prior = deblur.denoiser_for(3)
    sigma = torch.full((1,), 25 / 255)
    one_pass = median_seconds(lambda: prior.restore(clean, sigma=sigma), args.repeats)
    rows = [("one prior pass (FFDNet colour, eager fp32)", one_pass, 1)]
    with torch.no_grad():
        rows.append(("pnp_deblur (8 iterations)", median_seconds(lambda: deblur.restore(blurred), args.repeats), 8))
        small = torch.nn.functional.interpolate(clean, scale_factor=0.5, mode="bicubic", antialias=True)
        sr = PlugAndPlay(Downsample(2), iterations=16, ensemble_last=True)
        sr.net = deblur.net  # the same loaded priors
        rows.append(
            ("pnp_sr x2 (16 iterations, last pass x8)", median_seconds(lambda: sr.restore(small), args.repeats), 23)
        )
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=20)
        pixels, meta = jpeg_net_inputs(read_jpeg_coefficients(buffer.getvalue()), 3)
        jpeg = PlugAndPlay(JPEGConstraint(), iterations=1)
        jpeg.net = deblur.net
        rows.append(
            ("pnp_jpeg (1 pass + projection)", median_seconds(lambda: jpeg.solve(pixels[None], meta), args.repeats), 1)
        )
    print("\n| what | s/MP | / one prior pass | prior passes |")
    print("|---|---:|---:|---:|")
    for name, seconds, passes in rows:
        print(f"| {name} | {seconds / mp:.2f} | {seconds / one_pass:.1f} | {passes} |")


if __name__ == "__main__":
    main()
