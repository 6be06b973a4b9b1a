"""The Python/Jupyter API: compose a config by name and fit/test/correct without the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from m3l import Experiment, compose
from m3l.errors import CheckpointError, ConfigError
from tests.conftest import random_image

pytestmark = pytest.mark.slow

SHORT = [
    "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
    "data.patches_per_image=2", "data.val_patch_size=48", "data.patch_size=32", "data.batch_size=4",
    "logger=none",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("M3L_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("M3L_CONFIG_PATH", raising=False)


def _weights(exp: Experiment) -> list[torch.Tensor]:
    return [p.detach().clone() for p in exp.net.parameters()]


def test_fit_test_correct_from_python(tmp_path: Path):
    exp = Experiment(compose("demo", SHORT))
    metrics = exp.fit()
    assert Path(metrics["best_checkpoint"]).is_file()
    assert exp.output_dir.parent.parent == tmp_path / "runs" / "demo"
    assert (exp.output_dir / "config.yaml").is_file()

    tester = Experiment(compose("demo", SHORT, verb="test"))
    results = tester.test(checkpoint="last")
    assert "test/psnr" in results

    random_image(tmp_path / "in" / "x.png", (31, 17))
    corrector = Experiment(compose("demo", SHORT, verb="correct"))
    out = corrector.correct(checkpoint="best", correct_dir=tmp_path / "in", root_dir=tmp_path / "out")
    assert (out / "x.png").is_file()


def test_same_seed_same_weights_other_seed_differs():
    a = Experiment(compose("demo", [*SHORT, "seed=3"]))
    a.fit()
    b = Experiment(compose("demo", [*SHORT, "seed=3"]))
    b.fit()
    c = Experiment(compose("demo", [*SHORT, "seed=4"]))
    c.fit()
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    assert not all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(c)))


def test_two_experiments_get_different_run_dirs():
    first = Experiment(compose("demo", SHORT))
    second = Experiment(compose("demo", SHORT))
    assert first.output_dir != second.output_dir


def test_correct_without_input_or_serializer_is_explained(tmp_path: Path):
    exp = Experiment(compose("demo", SHORT, verb="correct"))
    with pytest.raises(ConfigError, match="data.correct_dir"):
        exp.correct(checkpoint="last", root_dir=tmp_path / "out")
    with pytest.raises(CheckpointError, match="no training run of 'demo'"):
        exp.correct(checkpoint="last", correct_dir=tmp_path, root_dir=tmp_path / "out")
    bare = Experiment(compose("demo", [*SHORT, "~serializer"], verb="correct"))
    with pytest.raises(ConfigError, match="serializer=image_serializer"):
        bare.correct(checkpoint="last", correct_dir=tmp_path)
