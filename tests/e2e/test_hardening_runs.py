"""Training runs as a careless or hostile user starts them (issues 26 and 27): what
``checkpoint=`` and ``resume=true`` take from a checkpoint, which run ``checkpoint=best``
means, a diverged run's "best" checkpoint, and the README's examples in the order shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.e2e.conftest import toy_env

pytestmark = pytest.mark.slow

# 8 steps per epoch of 16x16 gray images: seconds per run
TOY = ["model=toy", "logger=csv", "data.n_train=32", "trainer.max_epochs=1"]


def _run_dirs(env: dict[str, str]) -> list[Path]:
    return sorted(Path(env["M3L_RUNS_DIR"]).glob("toy/train/*"), key=lambda d: (d / "config.yaml").stat().st_mtime)


def _lr(checkpoint: Path) -> float:
    """The learning rate the run's optimizer used, as its checkpoint records it."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return float(state["optimizer_states"][0]["param_groups"][0]["lr"])


def test_checkpoint_path_starts_from_the_weights_with_the_optimizer_given_now(tmp_path: Path, workdir: Path):
    """Issue 26 item 11: ``checkpoint=PATH net.optimizer.lr=X`` trains with lr X (a new run from
    the weights); ``resume=true checkpoint=PATH`` continues the file exactly (its lr, its epoch)."""
    env = toy_env(tmp_path)
    first = run_cli("train", *TOY, cwd=workdir, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    (origin,) = _run_dirs(env)
    last = origin / "checkpoints" / "last.ckpt"
    assert _lr(last) == pytest.approx(1e-2)  # the toy config's lr

    started = run_cli("train", *TOY, f"checkpoint={last}", "net.optimizer.lr=0.125", cwd=workdir, env=env)
    assert started.returncode == 0, started.stderr[-3000:]
    new_dir = _run_dirs(env)[-1]
    new_last = new_dir / "checkpoints" / "last.ckpt"
    assert _lr(new_last) == pytest.approx(0.125)  # the optimizer of the config given now
    assert torch.load(new_last, weights_only=True)["epoch"] == 0  # a new run: its own first epoch
    log = (new_dir / "train.log").read_text()
    assert "Starting from the weights of" in log and "Resuming from" not in log
    assert "net.optimizer.lr: 0.01 there, 0.125 now" in log  # how it differs from the checkpoint's run
    weights = torch.load(last, weights_only=True)["state_dict"]
    # it really started from those weights: one epoch at lr 0.125 from them is not one from scratch
    assert not all(torch.equal(weights[k], v) for k, v in torch.load(new_last, weights_only=True)["state_dict"].items())

    resumed = run_cli(
        "train",
        *TOY,
        "trainer.max_epochs=2",
        "resume=true",
        f"checkpoint={last}",
        "net.optimizer.lr=0.125",
        cwd=workdir,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resumed_dir = _run_dirs(env)[-1]
    resumed_last = resumed_dir / "checkpoints" / "last.ckpt"
    assert _lr(resumed_last) == pytest.approx(1e-2)  # exactly the checkpoint's optimizer
    assert torch.load(resumed_last, weights_only=True)["epoch"] == 1  # its second epoch
    assert "Resuming from" in (resumed_dir / "train.log").read_text()


def test_checkpoint_best_takes_the_newest_run_whose_net_fits_and_the_header_says_which(tmp_path: Path, workdir: Path):
    """Issue 27 items 6 and 15: a newer sweep trial of another width is not what
    ``checkpoint=best`` means for this config; the header names the run and its metric value."""
    env = toy_env(tmp_path)
    fitting = run_cli("train", *TOY, cwd=workdir, env=env)
    assert fitting.returncode == 0, fitting.stderr[-3000:]
    sweep = run_cli("train", "-m", *TOY, "net.net.width=16", cwd=workdir, env=env)  # a newer trial, another net
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    runs = Path(env["M3L_RUNS_DIR"]) / "toy" / "train"
    (trial_best,) = runs.glob("multirun/*/0/checkpoints/best*.ckpt")
    (own_best,) = [p for p in runs.glob("*/checkpoints/best*.ckpt") if "multirun" not in p.parts]
    assert trial_best.stat().st_mtime > own_best.stat().st_mtime

    tested = run_cli("test", "model=toy", "logger=csv", "checkpoint=best", cwd=workdir, env=env)
    assert tested.returncode == 0, tested.stderr[-3000:]
    header = next(line for line in tested.stdout.splitlines() if line.strip().startswith("weights:"))
    score = torch.load(own_best, weights_only=True)["callbacks"]
    value = next(float(v["best_model_score"]) for v in score.values() if isinstance(v, dict) and v.get("monitor"))
    assert str(own_best) in header and own_best.parent.parent.name in header
    assert f"val/psnr={value:.4g}" in header and "newer run(s) skipped for another net" in header
    assert "net.net.width: 16 there, 8 now" in header

    wider = run_cli("test", "model=toy", "logger=csv", "checkpoint=best", "net.net.width=32", cwd=workdir, env=env)
    assert wider.returncode == 2, wider.stderr[-3000:]
    assert "checkpoint=best: no training run of 'toy'" in wider.stderr and "has the net of this config" in wider.stderr
    assert "net.net.width: 16 there, 32 now" in wider.stderr and "net.net.width: 8 there, 32 now" in wider.stderr
    assert "Traceback" not in wider.stderr


def test_a_diverged_run_says_its_best_checkpoint_is_far_worse_than_the_untrained_net(tmp_path: Path, workdir: Path):
    """Issue 26 item 18: lr 1e5 ruins the net without a NaN; the end of the run says the "best"
    checkpoint is far worse than the first validation (the sanity check before training)."""
    env = toy_env(tmp_path)
    sane = ["trainer.num_sanity_val_steps=1", "trainer.max_epochs=2"]
    diverged = run_cli("train", *TOY, *sane, "net.optimizer.lr=1e5", cwd=workdir, env=env)
    assert diverged.returncode == 0, diverged.stderr[-3000:]
    (run_dir,) = _run_dirs(env)
    (best,) = run_dir.glob("checkpoints/best*.ckpt")
    scores = [
        v["best_model_score"]
        for v in torch.load(best, weights_only=True)["callbacks"].values()
        if isinstance(v, dict) and v.get("monitor") == "val/psnr"
    ]
    assert scores and torch.isfinite(torch.as_tensor(scores[0]))  # no NaN: only the scores say it diverged
    text = diverged.stderr.split("Training finished", 1)[-1] + (run_dir / "train.log").read_text()
    assert "The best checkpoint is far worse than the model training started from: val/psnr=" in text
    assert "before training (Lightning's sanity check)" in text and str(best) in text
    assert "Lower the learning rate" in text

    healthy = run_cli("train", *TOY, *sane, cwd=workdir, env=env)  # the toy's own lr: it learns
    assert healthy.returncode == 0, healthy.stderr[-3000:]
    assert "far worse" not in healthy.stderr and "far worse" not in (_run_dirs(env)[-1] / "train.log").read_text()


# ---------------------------------------------------------------------------- the README, in order

README = Path(__file__).resolve().parents[2] / "README.md"
# what makes the README's demo training quick enough for a test (the README trains 12 epochs)
QUICK = ["trainer.max_epochs=1", "data.patches_per_image=4", "data.val_patch_size=64"]


def _readme_block(after: str, language: str) -> str:
    text = README.read_text()
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start : text.index("```", start)]


def _quick_start_commands() -> list[list[str]]:
    """The Quick start's commands, each as its argument list (continuations joined, comments cut)."""
    import shlex

    joined = _readme_block("## Quick start", "bash").replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def test_the_readme_python_snippet_runs_after_the_quick_start(tmp_path: Path, workdir: Path):
    """Issue 27 item 12: the Quick start writes ``corrected/``; the Python snippet after it, as
    written, must run too (it writes the same folder), and its errors speak Python."""
    import shutil
    import subprocess
    import sys

    from m3l.data.samples import sample_paths
    from tests.conftest import cli_env

    env = cli_env(tmp_path)
    photos = workdir / "my_photos"
    photos.mkdir()
    for path in sample_paths("val")[:2]:
        shutil.copy(path, photos / path.name)

    commands = _quick_start_commands()
    train, test, correct = commands[:3]  # the main job: train the demo, test it, correct my_photos/
    assert [c[:3] for c in (train, test, correct)] == [
        ["python3", "-m", f"m3l.run.{v}"] for v in ("train", "test", "correct")
    ]
    assert "serializer.root_dir=corrected/" in correct and "data.correct_dir=my_photos/" in correct
    for command, quick in ((train, QUICK), (test, QUICK[2:]), (correct, [])):
        done = subprocess.run(
            [sys.executable, *command[1:], *quick], cwd=workdir, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (command, done.stderr[-3000:])
    written = {p.name: p.stat().st_mtime_ns for p in (workdir / "corrected").iterdir() if p.suffix == ".png"}
    assert sorted(written) == sorted(p.name for p in photos.iterdir())

    snippet = _readme_block("From Python or Jupyter", "python")
    assert '"trainer.max_epochs=2"' in snippet
    snippet = snippet.replace('"trainer.max_epochs=2"', ", ".join(f'"{o}"' for o in QUICK))
    # then, as a user would next: the same call without overwrite=True, caught to read its message
    snippet += (
        "\nfrom m3l.errors import CorrectionFailures\n"
        "try:\n"
        "    exp.correct(checkpoint='best', correct_dir='my_photos/', root_dir='corrected/')\n"
        "except CorrectionFailures as exc:\n"
        "    print('REFUSED:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", snippet], cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, before in written.items():
        assert (workdir / "corrected" / name).stat().st_mtime_ns > before, name  # the snippet wrote them again
    refused = done.stdout.split("REFUSED:", 1)[1]
    assert "pass overwrite=True to replace it, or skip_existing=True to keep it" in refused
    assert "serializer." not in refused and "=true" not in refused


class _RunsACommand:
    """What a planted checkpoint holds: unpickling it runs a shell command (here: ``touch``)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def test_a_planted_checkpoint_is_named_code_by_every_command(tmp_path: Path, workdir: Path):
    """Issue 26 item 15: not "truncated or damaged" with torch's advice to re-run with
    weights_only=False, but what it is (code m3l will not load) and what its owner can do."""
    env = toy_env(tmp_path)
    target = tmp_path / "pwned"
    planted = tmp_path / "planted.ckpt"
    torch.save({"state_dict": {}, "x": _RunsACommand(target)}, planted)
    for verb, extra in (("test", []), ("train", []), ("train", ["resume=true"])):
        result = run_cli(verb, "model=toy", "logger=csv", f"checkpoint={planted}", *extra, cwd=workdir, env=env)
        assert result.returncode == 2, (verb, extra, result.stderr[-3000:])
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("m3l: error: ") and "holds code or pickled Python objects" in line, line
        assert "checkpoint_trusted=true" in line and "weights_only=False); torch.save(" in line
        assert "damaged" not in line and "Re-running" not in line and "Traceback" not in result.stderr
    assert not target.exists()
