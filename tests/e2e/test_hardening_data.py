"""`correct` and the runtime on hostile file names, videos and output folders (issue 26): the
failures list round-trips any file name and always describes the last run, a video never
comes out cropped, an output folder serves one run at a time, and QGAC refuses damaged JPEGs
with their reason."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import random_image, run_cli
from tests.data.conftest import size_changing_mp4

pytestmark = pytest.mark.slow


def _correct(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """:func:`tests.conftest.run_cli` for `correct`, reading its output with invalid UTF-8
    (the bytes of a non-UTF-8 file name) replaced."""
    return subprocess.run(
        [sys.executable, "-m", "m3l.run.correct", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )


def _rows(path: Path) -> list[list[str]]:
    """failures.tsv as Python's csv module reads it (the documented way)."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["path", "reason"]
    return rows[1:]


def _hostile_folder(root: Path) -> tuple[Path, list[bytes]]:
    """A good photo and three broken images whose names hold a tab, a newline and a byte
    that is not UTF-8; returns the folder and the broken files' paths as bytes."""
    root.mkdir(parents=True)
    random_image(root / "good.png", (40, 30))
    names = [b"tab\there.png", b"new\nline.png", b'bad\xff "quoted".png']
    for name in names:
        with open(os.path.join(os.fsencode(root), name), "wb") as fh:
            fh.write(b"\x89PNG\r\n\x1a\n not an image")
    return root, [os.path.join(os.fsencode(root), name) for name in names]


# ---------------------------------------------------------------------------- item 8


def test_failures_tsv_of_correct_round_trips_any_file_name(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path
):
    inputs, broken = _hostile_folder(tmp_path / "inputs")
    out = tmp_path / "out"
    done = _correct(
        "model=demo",
        f"checkpoint={demo_checkpoint}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    assert (out / "good.png").is_file()
    rows = _rows(out / "failures.tsv")
    assert sorted(os.fsencode(path) for path, _ in rows) == sorted(broken)
    assert all(reason.startswith("not a readable image") for _, reason in rows)


def test_failures_tsv_of_the_runtime_round_trips_any_file_name(tmp_path: Path):
    import torch

    from m3l.deploy.export import export_model
    from m3l.models.nets import DnCNN
    from m3l.models.restoration import RestorationModule

    torch.manual_seed(0)
    model = export_model(
        RestorationModule(DnCNN(in_channels=3, depth=2, features=8), residual=True).eval(),
        tmp_path / "tiny.onnx",
        fmt="onnx",
        name="tiny",
        sizes=[(24, 30)],
    )
    inputs, broken = _hostile_folder(tmp_path / "inputs")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "m3l.deploy.runtime", str(model), str(inputs), str(out)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-4000:]
    assert "Traceback" not in done.stderr and (out / "good.png").is_file()
    rows = _rows(out / "failures.tsv")
    assert sorted(os.fsencode(path) for path, _ in rows) == sorted(broken)


# ---------------------------------------------------------------------------- items 9 and 17


def test_failures_tsv_describes_the_last_run(workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path):
    """A run that lists failures, then a `skip_existing` rerun after the inputs were fixed:
    nothing failed, so no failures.tsv of the first run is left claiming otherwise."""
    inputs = tmp_path / "inputs"
    for i in range(3):
        random_image(inputs / f"photo{i}.png", (40, 30), seed=i)
    (inputs / "later.png").write_bytes(b"\x89PNG\r\n\x1a\n still being copied")
    out = tmp_path / "out"
    args = ("model=demo", f"checkpoint={demo_checkpoint}", f"data.correct_dir={inputs}", f"serializer.root_dir={out}")
    first = run_cli("correct", *args, cwd=workdir, env=env)
    assert first.returncode == 1, first.stderr[-4000:]
    assert [Path(p).name for p, _ in _rows(out / "failures.tsv")] == ["later.png"]
    random_image(inputs / "later.png", (40, 30), seed=9)  # the copy finished
    rerun = run_cli("correct", *args, "serializer.skip_existing=true", cwd=workdir, env=env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert (out / "later.png").is_file()
    assert not (out / "failures.tsv").exists(), "the first run's list outlived the run that corrected everything"
    assert "left by an earlier run" in rerun.stdout + rerun.stderr


def test_skip_existing_writes_again_an_empty_or_unreadable_output(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path
):
    inputs = tmp_path / "inputs"
    for i in range(3):
        random_image(inputs / f"photo{i}.png", (40, 30), seed=i)
    out = tmp_path / "out"
    args = ("model=demo", f"checkpoint={demo_checkpoint}", f"data.correct_dir={inputs}", f"serializer.root_dir={out}")
    assert run_cli("correct", *args, cwd=workdir, env=env).returncode == 0
    kept = (out / "photo0.png").read_bytes()
    (out / "photo1.png").write_bytes(b"")  # e.g. a full disk outside m3l, or a copy that failed
    (out / "photo2.png").write_bytes((out / "photo2.png").read_bytes()[:50])
    rerun = run_cli("correct", *args, "serializer.skip_existing=true", cwd=workdir, env=env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert (out / "photo0.png").read_bytes() == kept
    for name in ("photo1.png", "photo2.png"):
        assert Image.open(out / name).size == (40, 30), name  # written again, whole
    log = rerun.stdout + rerun.stderr
    assert "photo1.png is empty (0 bytes): writing it again" in log
    assert "photo2.png is not readable" in log


def test_a_second_run_into_a_busy_output_folder_is_refused(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path
):
    """While one run writes into a folder (here a real second process holds the folder's
    lock, as a running `correct` does), another `correct` into it stops at once, exit 2, and
    touches nothing there; once the first is done it runs."""
    inputs = tmp_path / "inputs"
    random_image(inputs / "photo.png", (40, 30))
    (inputs / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    out.mkdir()
    (out / "failures.tsv").write_text("path\treason\nthe first run's\tlist\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from m3l.data.writing import FolderLock; lock = FolderLock(sys.argv[1]); "
            "assert lock.acquire() is None; print('locked', flush=True); sys.stdin.read(); lock.release()",
            str(out / ".m3l-correct.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = (
            "model=demo",
            f"checkpoint={demo_checkpoint}",
            f"data.correct_dir={inputs}",
            f"serializer.root_dir={out}",
        )
        busy = run_cli("correct", *args, cwd=workdir, env=env)
        assert busy.returncode == 2, busy.stderr[-4000:]
        assert f"another correction (pid {holder.pid} on" in busy.stderr and "Traceback" not in busy.stderr
        assert not (out / "photo.png").exists()
        assert (out / "failures.tsv").read_text() == "path\treason\nthe first run's\tlist\n"
    finally:
        holder.communicate("", timeout=60)
    done = run_cli("correct", *args, cwd=workdir, env=env)
    assert done.returncode == 1, done.stderr[-4000:]  # broken.png
    assert (out / "photo.png").is_file() and [Path(p).name for p, _ in _rows(out / "failures.tsv")] == ["broken.png"]
    assert sorted(p.name for p in out.iterdir()) == ["failures.tsv", "photo.png"]  # the lock file is gone


def test_a_failures_list_that_cannot_be_written_is_logged(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path
):
    """The write of failures.tsv fails for real (a folder is in its place, which no rename can
    replace, root or not): the run still ends with its one-line summary, and the list is in
    the log with why it is not on disk."""
    inputs = tmp_path / "inputs"
    random_image(inputs / "photo.png", (40, 30))
    (inputs / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    (out / "failures.tsv" / "in the way").mkdir(parents=True)
    done = run_cli(
        "correct",
        "model=demo",
        f"checkpoint={demo_checkpoint}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    log = done.stdout + done.stderr
    assert f"could not write the list of failures to {out / 'failures.tsv'}" in log
    assert f"{inputs / 'broken.png'}\tnot a readable image" in log
    assert (out / "photo.png").is_file()


# ---------------------------------------------------------------------------- items 4 and 10


@pytest.mark.parametrize("serializer", ["video_serializer", "image_serializer"])
@pytest.mark.parametrize("case", ["over_the_limit", "size_change"])
def test_a_video_frame_of_another_size_is_a_listed_failure_never_a_crop(
    workdir: Path, tmp_path: Path, demo_checkpoint: Path, serializer: str, case: str
):
    """A frame over the pixel limit (the header says 64x48) or merely of another size than the
    first: the video is listed in failures.tsv with the reason and leaves no output (with
    video_serializer no .mp4, with image_serializer no frame folder), whatever was written of
    it before that frame; the other inputs are corrected."""
    from tests.conftest import cli_env

    pytest.importorskip("av")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    size_changing_mp4(inputs / "clip.mp4", (64, 48), 6, (128, 96))
    random_image(inputs / "photo.png", (40, 30))
    env = cli_env(tmp_path, **({"M3L_MAX_IMAGE_PIXELS": "5000"} if case == "over_the_limit" else {}))
    out = tmp_path / "out"
    done = run_cli(
        "correct",
        "model=demo",
        f"checkpoint={demo_checkpoint}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        f"serializer={serializer}",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    rows = _rows(out / "failures.tsv")
    assert [Path(p).name for p, _ in rows] == ["clip.mp4"]
    expected = (
        "frame 6: 128x96 = 12,288 pixels is over the limit of 5,000 pixels"
        if case == "over_the_limit"
        else "frame 6 is 128x96 pixels but the video began at 64x48"
    )
    assert rows[0][1].startswith(expected), rows[0][1]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["failures.tsv", "photo.png"]


# ---------------------------------------------------------------------------- items 10 and 16


def test_qgac_refuses_damaged_jpegs_with_their_reason_and_keeps_gray_gray(
    workdir: Path, env: dict[str, str], tmp_path: Path
):
    pytest.importorskip("jpeglib", reason="the jpeg extra (pip install 'm3l[jpeg]')")
    from m3l.weights.hub import WEIGHTS_DIR
    from tests.data.test_jpeg import _damaged_jpegs, _photo

    inputs = tmp_path / "jpegs"
    inputs.mkdir()
    damaged = _damaged_jpegs()
    for name, (data, _) in damaged.items():
        (inputs / name).write_bytes(data)
    _photo("camera", (72, 56), "L").save(inputs / "gray.jpg", quality=40)
    _photo("chelsea", (72, 56)).save(inputs / "colour.jpg", quality=40)
    out = tmp_path / "out"
    done = run_cli(
        "correct",
        "model=qgac",
        f"checkpoint={WEIGHTS_DIR / 'qgac.safetensors'}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    reasons = {Path(p).name: reason for p, reason in _rows(out / "failures.tsv")}
    assert sorted(reasons) == sorted(damaged)
    for name, (_, pattern) in damaged.items():
        assert re.match(pattern, reasons[name]), (name, reasons[name])
        assert "input.jpg" not in reasons[name]
    assert sorted(p.name for p in out.iterdir()) == ["colour.png", "failures.tsv", "gray.png"]
    assert Image.open(out / "gray.png").mode == "L"  # gray stays gray
    assert Image.open(out / "colour.png").mode == "RGB"
