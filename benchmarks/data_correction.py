"""Correction of a folder end to end (read + predict + write) next to the bare forward pass.

Run: ``python benchmarks/data_correction.py [--copies 2] [--depth 17]``.

The folder holds the built-in sample photos (train + val, gray and colour, several sizes),
``--copies`` times. End to end is ``Trainer.predict`` with the correction datamodule and the
image serializer (PNG); the baseline is the same net's forward pass on the same tensors, already
in memory, in the same run. The ratio end-to-end/bare shows the cost of the data side.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from m3l.data import ImageSerializer, RestorationDataModule, read_image
from m3l.data.samples import sample_paths
from m3l.models.nets.dncnn import DnCNN
from m3l.models.restoration import RestorationModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--depth", type=int, default=17)
    parser.add_argument("--features", type=int, default=64)
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        for c in range(args.copies):
            for path in sample_paths("train") + sample_paths("val"):
                target = src / f"copy{c}" / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        inputs = [read_image(p, 3)[0] for p in sorted(src.rglob("*.png"))]
        megapixels = sum(x.shape[-2] * x.shape[-1] for x in inputs) / 1e6
        net = DnCNN(in_channels=3, depth=args.depth, features=args.features).eval()
        module = RestorationModule(net, residual=True)

        start = time.perf_counter()
        with torch.no_grad():
            for x in inputs:
                module.predict_step({"input": x[None]}, 0)
        bare = time.perf_counter() - start

        dm = RestorationDataModule(correct_dir=str(src), channels=3)
        serializer = ImageSerializer(Path(tmp) / "out")
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            callbacks=[serializer],
        )
        start = time.perf_counter()
        trainer.predict(module, datamodule=dm, return_predictions=False)
        e2e = time.perf_counter() - start
        assert serializer.written == len(inputs) and not serializer.failures

    n = len(inputs)
    print(f"\nCorrection of {n} images ({megapixels:.2f} MP), DnCNN depth {args.depth} x {args.features} features, CPU")
    print(f"{'':28s} {'seconds':>8s} {'images/s':>9s} {'MP/s':>7s} {'ratio':>6s}")
    print(f"{'bare forward (baseline)':28s} {bare:8.2f} {n / bare:9.2f} {megapixels / bare:7.3f} {1.0:6.2f}")
    print(f"{'end to end: read+predict+write':28s} {e2e:8.2f} {n / e2e:9.2f} {megapixels / e2e:7.3f} {e2e / bare:6.2f}")


if __name__ == "__main__":
    main()
