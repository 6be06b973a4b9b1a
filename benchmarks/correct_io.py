"""Where the wall time of `correct` on a folder goes: reading, predicting, writing, and how much
of it the compute thread spends waiting on I/O.

    python benchmarks/correct_io.py [--count 50] [--max-side 160] [--models DnCNN-17,demo]
        [--backend eager] [--threads 2] [--repeats 3]

- Photos: the folder of ``correct_throughput.py`` (50 real photos of the zoo, box-downscaled to
  at most ``--max-side`` px, sigma-25 noise, PNG).
- Apart: the three stages timed one after the other in this process on the same folder: read
  (m3l's ``read_image``: PNG decode to a tensor), predict (the module's ``restore``, eager fp32)
  and write (m3l's ``write_image``: PNG encode, atomic rename).
- ``correct``: ``Experiment.correct`` end to end (``backend=`` as given), with the time spent
  inside ``predict_step`` summed, in two modes run alternately: "serial" (reading and writing on
  the compute thread: ``serializer.write_ahead=0`` and the datamodule's ``read_ahead = 0``, what
  m3l did before) and "overlapped" (m3l's defaults: a reader thread and a writer thread). "Waits on I/O" is the share of the prediction loop (from the
  first ``predict_step`` to the end of ``correct``, so the last writes are in it) that the
  compute thread spent outside ``predict_step``: reading the next batch, writing the last one,
  Lightning's loop. "Set-up" is what comes before the first batch (config, weights, the scan
  of the folder, the backend's probe is not in it: that runs in the first ``predict_step``).
- Medians of ``--repeats`` runs, each row in this process (a warm-up correction first).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from correct_throughput import MODELS, _checkpoint, _experiment, build_folders  # noqa: E402
from machine import cpu_line  # noqa: E402


def apart(model: str, checkpoint: str, src: Path, out: Path) -> dict[str, float]:
    """Seconds of read, predict and write, one stage after the other."""
    from m3l.data.io import read_image, write_image

    exp = _experiment(model, out.parent, [])
    exp.load_weights(checkpoint)
    module = exp.net.eval()
    paths = sorted(src.glob("*.png"))
    start = time.perf_counter()
    images = [read_image(p, 3)[0] for p in paths]
    read = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        outputs = [module.restore(x[None])[0] for x in images]
    predict = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path, y in zip(paths, outputs):
        write_image(out / path.name, y)
    write = time.perf_counter() - start
    return {"read": read, "predict": predict, "write": write}


def end_to_end(
    model: str, checkpoint: str, src: Path, out: Path, backend: str, overlapped: bool = True
) -> dict[str, float]:
    """Wall, set-up, loop and compute seconds of one ``correct`` run."""
    from m3l.data import datamodules
    from m3l.models.restoration import RestorationModule

    datamodules._DataModuleBase.read_ahead = 2 if overlapped else 0

    marks: dict[str, float] = {"compute": 0.0}
    original = RestorationModule.predict_step

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        marks.setdefault("first", start)
        try:
            return original(self, *args, **kwargs)
        finally:
            marks["compute"] += time.perf_counter() - start

    exp = _experiment(
        model,
        out.parent,
        [
            f"data.correct_dir={src}",
            f"serializer.root_dir={out}",
            f"backend={backend}",
            "precision=fp32" if backend != "auto" else "precision=auto",
            f"serializer.write_ahead={2 if overlapped else 0}",
        ],
    )
    RestorationModule.predict_step = timed
    try:
        start = time.perf_counter()
        exp.correct(checkpoint=checkpoint)
        end = time.perf_counter()
    finally:
        RestorationModule.predict_step = original
    loop = end - marks["first"]
    return {
        "wall": end - start,
        "setup": marks["first"] - start,
        "loop": loop,
        "compute": marks["compute"],
        "wait": (loop - marks["compute"]) / loop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--max-side", type=int, default=160)
    parser.add_argument("--models", default="DnCNN-17,demo")
    parser.add_argument("--backend", default="eager")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    work = args.work or Path(tempfile.mkdtemp(prefix="m3l_correct_io_"))
    os.environ.setdefault("M3L_CACHE_DIR", str(work / "cache"))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    files, _ = build_folders(work, None, args.count, args.max_side)
    src = work / "in"
    from PIL import Image

    megapixels = sum(Image.open(p).size[0] * Image.open(p).size[1] for p in src.glob("*.png")) / 1e6
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = MODELS[name][0]
        checkpoint = _checkpoint(model, MODELS[name][1], work)
        end_to_end(model, checkpoint, work / "warm", work / f"out-warm-{name}", args.backend)
        runs_apart = [apart(model, checkpoint, src, work / f"apart-{name}-{i}") for i in range(args.repeats)]
        runs: dict[str, list[dict[str, float]]] = {"serial": [], "overlapped": []}
        for i in range(args.repeats):  # alternately: the load of a shared machine moves by the minute
            for mode in runs:
                runs[mode].append(
                    end_to_end(
                        model, checkpoint, src, work / f"out-{name}-{mode}-{i}", args.backend, mode == "overlapped"
                    )
                )
        for mode, results in runs.items():
            median = {k: statistics.median(r[k] for r in runs_apart) for k in runs_apart[0]}
            median.update({k: statistics.median(r[k] for r in results) for k in results[0]})
            rows.append((name, mode, median))
            print(f"  {name} {mode}: {median}", file=sys.stderr)
    load_after = os.getloadavg()
    print(
        f"\n# correct I/O, {started}, {cpu_line()}, torch {torch.__version__}, {args.threads} threads, backend={args.backend}"
    )
    print(f"# busy shared machine: load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores)")
    print(
        f"# data: {len(files)} real photos (zoo), downscaled to <= {args.max_side} px, sigma-25 noise, PNG: "
        f"{megapixels:.2f} MP in all; medians of {args.repeats}\n"
    )
    print(
        "| model | read s (apart) | predict s (apart) | write s (apart) | correct: I/O | wall s | set-up s | loop s | "
        "in predict_step s | loop waiting on I/O |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for name, mode, m in rows:
        print(
            f"| {name} | {m['read']:.2f} | {m['predict']:.2f} | {m['write']:.2f} | {mode} | {m['wall']:.2f} | {m['setup']:.2f} | "
            f"{m['loop']:.2f} | {m['compute']:.2f} | {100 * m['wait']:.0f}% |"
        )


if __name__ == "__main__":
    main()
