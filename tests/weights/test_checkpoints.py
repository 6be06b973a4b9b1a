"""m3l.weights.checkpoints: the one loader refuses pickled code, even when torch is told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from m3l.weights.checkpoints import check_checkpoint, load_checkpoint, load_weights_into
from m3l.errors import CheckpointError


class Planted:
    """Unpickling this creates the file ``target``: the stand-in for any code in a pickle."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def plant(path: Path, target: Path) -> Path:
    """A checkpoint-shaped file (real weights) whose pickle would create ``target``."""
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": Planted(target)}, path)
    return path


def test_planted_pickle_is_refused_even_with_force_no_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    target = tmp_path / "pwned"
    checkpoint = plant(tmp_path / "planted.ckpt", target)
    with pytest.raises(CheckpointError, match="checkpoint_trusted=true") as err:
        load_checkpoint(checkpoint)
    assert "planted.ckpt" in str(err.value) and "pickled Python objects" in str(err.value)
    with pytest.raises(CheckpointError):
        check_checkpoint(checkpoint)
    assert not target.exists()
    import os

    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"  # restored for the user's own code


def test_trusted_loads_pickled_objects(tmp_path):
    target = tmp_path / "made"
    payload = load_checkpoint(plant(tmp_path / "planted.ckpt", target), trusted=True)
    assert target.exists() and torch.equal(payload["state_dict"]["w"], torch.zeros(2))


def test_weights_only_checkpoint_loads(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(3)}, "epoch": 2}, tmp_path / "ok.ckpt")
    assert load_checkpoint(tmp_path / "ok.ckpt")["epoch"] == 2


@pytest.mark.parametrize("kind", ["jpeg", "text", "zip"])
def test_a_file_that_is_not_a_checkpoint_says_so_without_suggesting_trust(tmp_path, kind):
    path = tmp_path / "photo.ckpt"
    if kind == "jpeg":
        Image.new("RGB", (16, 16), (200, 30, 30)).save(path, format="JPEG")
    elif kind == "text":
        path.write_text("model: dncnn\n")
    else:
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "photo.ckpt is not a checkpoint" in message and "trusted" not in message
    if kind == "jpeg":
        assert "JPEG" in message
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        check_checkpoint(path, trusted=True)  # trusting does not make an image a checkpoint


def bad_safetensors(path: Path, kind: str) -> Path:
    """A file named ``*.safetensors`` that is none: a JPEG renamed, or a real one cut short."""
    if kind == "jpeg":
        Image.new("RGB", (16, 16), (200, 30, 30)).save(path, format="JPEG")
    else:
        from safetensors.torch import save_file

        save_file(torch.nn.Conv2d(3, 3, 3).state_dict(), str(path))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("kind", ["jpeg", "truncated"])
def test_a_bad_safetensors_file_is_named_not_readable(tmp_path, kind):
    path = bad_safetensors(tmp_path / "weights.safetensors", kind)
    net = torch.nn.Conv2d(3, 3, 3)
    for load in (lambda: load_weights_into(net, path), lambda: check_checkpoint(path), lambda: load_checkpoint(path)):
        with pytest.raises(CheckpointError, match=r"weights\.safetensors is not a readable safetensors file") as err:
            load()
        if kind == "jpeg":
            assert "a JPEG image" in str(err.value)


def test_truncated_checkpoint_is_named_damaged(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(300)}}, tmp_path / "full.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "full.ckpt").read_bytes()[:400])
    with pytest.raises(CheckpointError, match="cut.ckpt") as err:
        load_checkpoint(tmp_path / "cut.ckpt")
    assert "trusted" not in str(err.value)


class RunsACommand:
    """A pickle as an attacker plants it: unpickling calls ``os.system`` (here: creates ``target``)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_a_pickle_that_runs_a_command_is_named_code_with_what_its_owner_can_do(tmp_path, legacy):
    target = tmp_path / "pwned"
    path = tmp_path / "planted.ckpt"
    torch.save(
        {"state_dict": {"w": torch.zeros(2)}, "x": RunsACommand(target)},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    for load in (
        lambda: load_checkpoint(path),
        lambda: check_checkpoint(path),
        lambda: load_weights_into(torch.nn.Linear(2, 1), path),
    ):
        with pytest.raises(CheckpointError) as err:
            load()
        message = str(err.value)
        # what it is: code m3l will not load, naming what it would run; not a damaged file
        assert "holds code or pickled Python objects" in message and "system`" in message
        assert "truncated" not in message and "damaged" not in message and "Re-running" not in message
        # how its owner trusts it: the option, or a conversion to weights only that m3l then loads
        assert "checkpoint_trusted=true" in message and "planted-weights.ckpt" in message
    assert not target.exists()
    command = str(err.value).split('python -c "', 1)[1].split('"', 1)[0]
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", command], cwd=tmp_path, check=True)
    assert target.exists()  # the owner's conversion ran the pickle (their choice, with their file)
    assert torch.equal(load_checkpoint(tmp_path / "planted-weights.ckpt")["state_dict"]["w"], torch.zeros(2))


def test_a_truncated_legacy_pickle_is_damaged_not_code(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(300)}}, tmp_path / "full.pt", _use_new_zipfile_serialization=False)
    data = (tmp_path / "full.pt").read_bytes()
    for size in range(60, len(data), 20):  # cut anywhere, e.g. inside the name of a torch function
        (tmp_path / "cut.pt").write_bytes(data[:size])
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / "cut.pt")
        assert "truncated or damaged" in str(err.value) and "holds code" not in str(err.value), size
        assert "weights_only" not in str(err.value)


# ---------------------------------------------------------------------------- checkpoint=best|last


def _net(width: int, lr: float = 1e-3) -> dict:
    return {
        "_target_": "m3l.models.restoration.RestorationModule",
        "net": {"_target_": "m3l.models.nets.dncnn.DnCNN", "in_channels": 3, "features": width},
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr},
    }


def _run(root: Path, name: str, net: dict | None, scores: dict[str, float], mode: str = "max", age: int = 0) -> Path:
    """A run directory as train leaves it: config.yaml and best checkpoints with their scores."""
    import os

    from omegaconf import OmegaConf

    run_dir = root / "toy" / "train" / name
    (run_dir / "checkpoints").mkdir(parents=True)
    if net is not None:
        OmegaConf.save(OmegaConf.create({"name": "toy", "net": net}), run_dir / "config.yaml")
    for filename, score in scores.items():
        path = run_dir / "checkpoints" / filename
        state = {
            "monitor": "val/psnr",
            "mode": mode,
            "current_score": torch.tensor(score),
            "best_model_path": str(path),
        }
        torch.save({"state_dict": {}, "callbacks": {"MonitoredCheckpoint{'monitor': 'val/psnr'}": state}}, path)
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    return run_dir


def test_checkpoint_best_is_the_newest_run_whose_net_fits(tmp_path):
    from omegaconf import OmegaConf

    from m3l.weights.checkpoints import resolve_checkpoint_noted

    cfg = OmegaConf.create({"name": "toy", "paths": {"runs_dir": str(tmp_path)}, "net": _net(32)})
    old = _run(tmp_path, "2026-01-01_00-00-00", _net(32), {"best-a.ckpt": 20.0, "best-b.ckpt": 25.0}, age=30)
    _run(tmp_path, "2026-01-02_00-00-00", _net(32, lr=0.5), {"best-c.ckpt": 12.0}, age=20)  # another lr: fits
    _run(tmp_path, "multirun/2026-01-03_00-00-00/0", _net(64), {"best-d.ckpt": 31.0}, age=10)  # another width
    _run(tmp_path, "2026-01-04_00-00-00", None, {"best-e.ckpt": 33.0}, age=0)  # no config.yaml: net unknown
    path, note = resolve_checkpoint_noted("best", cfg)
    assert path.name == "best-c.ckpt"  # the newest that fits, not the best of all runs
    assert "val/psnr=12" in note and "2 newer run(s) skipped for another net" in note

    cfg.net = _net(16)
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint_noted("best", cfg)
    message = str(err.value)
    assert "no training run of 'toy'" in message and "net.net.features: 64 there, 16 now" in message
    assert "net unknown (no config.yaml)" in message

    # of several best checkpoints of one run, the best score in the monitor's direction
    cfg.net = _net(32)
    for run in tmp_path.glob("toy/train/2026-01-02*"):
        import shutil

        shutil.rmtree(run)
    assert resolve_checkpoint_noted("best", cfg)[0] == old / "checkpoints" / "best-b.ckpt"
