"""Train the model zoo's shipped weights on CPU: one `m3l.run.train` command per model.

    python benchmarks/zoo_photos.py --out ~/m3l-photos          # the photos (offline, Debian)
    python benchmarks/train_zoo.py --photos ~/m3l-photos --runs ~/m3l-zoo-runs [--only NAME ...]

Each recipe is a packaged model config (``src/m3l/configs/model/NAME.yaml``: net, loss,
cosine learning-rate schedule over ``trainer.max_steps``, bf16 autocast) plus the data
overrides below; the exact command is printed and written, with the wall time and the
measured patches/s, to ``RUNS/zoo_runs.json``. Then
``python src/m3l/weights/shipped/make_weights.py RUNS/zoo_runs.json`` turns the best checkpoints
into the shipped safetensors files and their cards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_line

# model config -> (patch size, batch size, extra overrides); one epoch covers the whole run and
# validation (checkpoint selection) runs every 500 steps, the last at the final step
RECIPES: dict[str, tuple[int, int, list[str]]] = {
    "ffdnet_color_blind": (64, 32, ["trainer.max_steps=3500"]),
    "ffdnet_jpeg_gray": (64, 32, ["trainer.max_steps=3000"]),
    "ffdnet_jpeg_color": (64, 32, ["trainer.max_steps=2500"]),
    "nafnet_small_deblur": (128, 8, ["trainer.max_steps=1500"]),
    # DCT domain (needs m3l[jpeg]); capped at 45 min of a busy shared 2-core machine
    "qgac": (64, 16, ["trainer.max_steps=500", "+trainer.max_time=00:00:40:00", "trainer.val_check_interval=100"]),
    # second stages: fine-tune from the best weights of the first (checkpoint=STAGE1 is that
    # run's best checkpoint exported as safetensors: weights only, a fresh cosine schedule)
    "ffdnet_color_blind+2": (64, 32, ["trainer.max_steps=2000", "net.optimizer.lr=1e-4", "checkpoint=STAGE1"]),
    "nafnet_small_deblur+2": (128, 8, ["trainer.max_steps=3000", "net.optimizer.lr=5e-4", "checkpoint=STAGE1"]),
}


def stage1_weights(base: str, records: dict, runs: Path) -> Path:
    """The first stage's best checkpoint as a safetensors file of the module's weights."""
    import torch
    from safetensors.torch import save_file

    best = sorted(Path(records[base]["run_dir"]).glob("checkpoints/best*.ckpt"))
    if not best:
        sys.exit(f"{base}: train the first stage first (no best checkpoint in {records[base]['run_dir']})")
    state = torch.load(best[-1], map_location="cpu", weights_only=True)["state_dict"]
    path = runs / f"{base}-stage1.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def command(name: str, photos: Path, runs: Path, stage1: Path | None = None) -> list[str]:
    patch, batch, extra = RECIPES[name]
    extra = [f"checkpoint={stage1}" if o == "checkpoint=STAGE1" else o for o in extra]
    train = sorted((photos / "train").glob("*.png"))
    if not train:
        sys.exit(f"no photos in {photos / 'train'}: run benchmarks/zoo_photos.py --out {photos} first")
    steps = next(int(o.split("=")[1]) for o in extra if o.startswith("trainer.max_steps="))
    per_image = math.ceil((steps + 10) * batch / len(train))
    return [
        sys.executable,
        "-m",
        "m3l.run.train",
        f"model={name.split('+')[0]}",
        f"data.train_dir={photos / 'train'}",
        f"data.val_dir={photos / 'val'}",
        f"data.test_dir={photos / 'val'}",
        f"data.patch_size={patch}",
        f"data.batch_size={batch}",
        f"data.patches_per_image={per_image}",
        "data.val_patch_size=256",
        "trainer.val_check_interval=500",
        "logger=csv",
        f"paths.runs_dir={runs}",
        *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    record_file = args.runs / "zoo_runs.json"
    records = json.loads(record_file.read_text()) if record_file.is_file() else {}
    for name in args.only:
        base = name.split("+")[0]
        stage1 = stage1_weights(base, records, args.runs.resolve()) if "+" in name else None
        cmd = command(name, args.photos.resolve(), args.runs.resolve(), stage1)
        print("$", " ".join(cmd[1:]), flush=True)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        (args.runs / f"{name}.log").write_text(done.stdout + done.stderr)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            sys.exit(f"{name}: training failed (log: {args.runs / f'{name}.log'})")
        run_dir = next(
            line.split(":", 1)[1].strip()
            for line in done.stdout.splitlines()[::-1]
            if line.startswith("Run directory:")
        )
        patch, batch, extra = RECIPES[name]
        steps = next(int(o.split("=")[1]) for o in extra if o.startswith("trainer.max_steps="))
        record = {
            "command": "python -m m3l.run.train " + " ".join(cmd[3:]),
            "run_dir": run_dir,
            "wall_s": round(wall, 1),
            "steps": steps,
            "patch": patch,
            "batch": batch,
            "patches_per_s": round(steps * batch / wall, 1),
            "machine": f"{platform.machine()}, {cpu_line()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
            "date": time.strftime("%Y-%m-%d"),
        }
        if stage1 is None:
            record["stages"] = [dict(record)]
        else:  # the second stage's record keeps the first's
            first = records[base]
            record["stages"] = [*first.get("stages", [first]), dict(record)]
        records[base] = record
        record_file.write_text(json.dumps(records, indent=2))
        print(f"{name}: {wall / 60:.1f} min, {record['patches_per_s']} patches/s -> {run_dir}", flush=True)


if __name__ == "__main__":
    main()
