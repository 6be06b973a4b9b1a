"""Load test of `correct`: thousands of small real images with corrupt ones among them, and one
long video, through the real command; throughput, peak memory, and the bookkeeping checked.

    python benchmarks/load_correct.py [--images 2000] [--bad 0.05] [--frames 3000] [--work DIR]
        [--model demo] [--checkpoint PATH|pretrained]

Images: crops (48-96 px) of m3l's packaged sample photos (real CC0 photos), PNG and JPEG,
nested in 20 folders; a fraction ``--bad`` are corrupt in the ways users' folders are
(truncated files, zero bytes, random bytes with an image suffix, a text file renamed .png).
Video: ``--frames`` frames (160x120) panning over a sample photo, H.264 (PyAV).

Reported: wall time, inputs/s and megapixels/s of each run (start-up included), the peak
resident memory of the `correct` process (its own ``ru_maxrss``), and the checks: every good
input written exactly once, every bad one listed in ``failures.tsv`` and nothing else, the
video written with every frame. The demo model's untrained weights are used by default (the
bookkeeping, not the restoration, is measured); ``--model ffdnet_color_blind --checkpoint
pretrained`` measures a zoo model instead.
"""

from __future__ import annotations

import argparse
import csv
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from machine import cpu_line


def make_images(root: Path, count: int, bad_fraction: float, seed: int = 0) -> tuple[set[str], set[str]]:
    from m3l.data.samples import sample_paths

    rng = random.Random(seed)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sample_paths("train")]
    good, bad = set(), set()
    n_bad = round(count * bad_fraction)
    kinds = ["truncated", "empty", "random", "text"]
    for i in range(count):
        folder = root / f"set{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".jpg" if i % 3 == 0 else ".png"
        path = folder / f"img{i:05d}{suffix}"
        rel = path.relative_to(root).as_posix()
        if i < n_bad:
            kind = kinds[i % len(kinds)]
            if kind == "truncated":
                photo = photos[i % len(photos)][:64, :64]
                Image.fromarray(photo).save(path)
                path.write_bytes(path.read_bytes()[: max(40, path.stat().st_size // 3)])
            elif kind == "empty":
                path.write_bytes(b"")
            elif kind == "random":
                path.write_bytes(rng.randbytes(2048))
            else:
                path.write_text("not an image\n")
            bad.add(rel)
            continue
        photo = photos[rng.randrange(len(photos))]
        size = rng.randrange(48, 97)
        top, left = rng.randrange(photo.shape[0] - size), rng.randrange(photo.shape[1] - size)
        Image.fromarray(photo[top : top + size, left : left + size]).save(path, quality=92)
        good.add(rel)
    return good, bad


def make_video(path: Path, frames: int) -> None:
    import av

    from m3l.data.samples import sample_paths

    photo = np.asarray(Image.open(sample_paths("train")[0]).convert("RGB").resize((640, 480)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            x = int((640 - 160) * (0.5 + 0.5 * np.sin(i / 150))) // 2 * 2
            y = int((480 - 120) * (0.5 + 0.5 * np.cos(i / 200))) // 2 * 2
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo[y : y + 120, x : x + 160]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_correct(args: argparse.Namespace, inputs: Path, out: Path, extra: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the command, and its stderr."""
    code = (
        "import resource, runpy, sys; sys.argv = ['m3l.run.correct'] + sys.argv[1:];\n"
        "try:\n runpy.run_module('m3l.run.correct', run_name='__main__')\n"
        "finally:\n print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    cmd = [
        sys.executable,
        "-c",
        code,
        f"model={args.model}",
        f"checkpoint={args.checkpoint}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        f"paths.runs_dir={args.work / 'runs'}",
        "logger=none",
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = next(
        (int(line.split()[1]) / 1024 for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB")),
        float("nan"),
    )
    if done.returncode not in (0, 1):
        sys.exit(f"correct failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, peak, done.stderr


def demo_weights(work: Path) -> Path:
    from safetensors.torch import save_file

    from m3l import compose
    from m3l.engine.experiment import Experiment

    work.mkdir(parents=True, exist_ok=True)
    path = work / "demo_untrained.safetensors"
    net = Experiment(compose("demo", [f"paths.runs_dir={work / 'runs'}"])).net
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--bad", type=float, default=0.05)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--work", type=Path, default=Path("load_benchmark"))
    parser.add_argument("--model", default="demo")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    args.work = args.work.resolve()
    if args.work.exists() and any(args.work.iterdir()):
        sys.exit(f"{args.work} is not empty: pass a new --work folder")
    args.checkpoint = args.checkpoint or str(demo_weights(args.work))
    print(f"# correct load test, {time.strftime('%Y-%m-%d')}, {cpu_line()}")
    print(
        "\n| run | inputs | good | bad | wall s | inputs/s | MP/s | peak RSS MB | written once | bad listed | extra listed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|")

    images = args.work / "images"
    good, bad = make_images(images, args.images, args.bad)
    out = args.work / "images_out"
    wall, peak, _ = run_correct(args, images, out, [])
    written = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "failures.tsv"]
    stems = [w.rsplit(".", 1)[0] for w in written]
    expected = {g.rsplit(".", 1)[0] for g in good}
    once = len(stems) == len(set(stems)) and set(stems) == expected
    with (out / "failures.tsv").open() as handle:
        listed = {
            Path(row["path"]).resolve().relative_to(images.resolve()).as_posix()
            for row in csv.DictReader(handle, delimiter="\t")
        }
    pixels = sum(np.prod(Image.open(images / g).size) for g in good) / 1e6
    print(
        f"| {args.images} images | {args.images} | {len(good)} | {len(bad)} | {wall:.1f} | {args.images / wall:.1f} | "
        f"{pixels / wall:.2f} | {peak:.0f} | {'yes' if once else 'NO'} | {'yes' if bad <= listed else 'NO'} | "
        f"{len(listed - bad)} |",
        flush=True,
    )

    video = args.work / "video" / "pan.mp4"
    make_video(video, args.frames)
    vout = args.work / "video_out"
    wall, peak, _ = run_correct(args, video, vout, ["serializer=video_serializer"])
    from m3l.data.io import probe_video

    result = next(vout.rglob("*.mp4"), None) or next(vout.rglob("*.mkv"), None)
    frames = probe_video(result).num_frames if result else 0
    print(
        f"| one video, {args.frames} frames 160x120 | {args.frames} | {frames} | 0 | {wall:.1f} | {args.frames / wall:.1f} | "
        f"{args.frames * 0.0192 / wall:.2f} | {peak:.0f} | {'yes' if frames == args.frames else 'NO'} | - | - |",
        flush=True,
    )


if __name__ == "__main__":
    main()
