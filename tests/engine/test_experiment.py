"""The Python/Jupyter API: compose a config by name and fit/test/correct without the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from m3l import Experiment, compose
from m3l.errors import CheckpointError, ConfigError
from tests.conftest import random_image

pytestmark = pytest.mark.slow

SHORT = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "data.patches_per_image=2",
    "data.val_patch_size=48",
    "data.patch_size=32",
    "data.batch_size=4",
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

    # the command line's options as arguments, for one call each; errors name the arguments
    from m3l.errors import CorrectionFailures

    (out / "x.png").write_bytes(b"mine")
    with pytest.raises(CorrectionFailures, match=r"pass overwrite=True to replace it, or skip_existing=True") as err:
        corrector.correct(checkpoint="best")
    assert "serializer." not in str(err.value)
    corrector.correct(checkpoint="best", overwrite=True, format="png")
    assert Image.open(out / "x.png").size == (31, 17)
    (out / "x.png").write_bytes(b"mine")
    with pytest.raises(CorrectionFailures):  # overwrite=True held for that call only
        corrector.correct(checkpoint="best")
    assert (out / "x.png").read_bytes() == b"mine"
    with pytest.raises(ConfigError, match=r"colour is not an option of the serializer .*jpeg_quality"):
        corrector.correct(checkpoint="best", colour="red")


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
    with pytest.raises(ConfigError, match=r"pass correct_dir=DIR_OR_FILE"):  # in Python's words
        exp.correct(checkpoint="last", root_dir=tmp_path / "out")
    with pytest.raises(CheckpointError, match="no training run of 'demo'"):
        exp.correct(checkpoint="last", correct_dir=tmp_path, root_dir=tmp_path / "out")
    bare = Experiment(compose("demo", [*SHORT, "~serializer"], verb="correct"))
    with pytest.raises(ConfigError, match="serializer=image_serializer"):
        bare.correct(checkpoint="last", correct_dir=tmp_path)


def test_the_readme_snippet_runs_as_written_each_verb_in_its_own_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import shutil

    from m3l.data.samples import sample_paths

    photos = tmp_path / "my_photos"
    photos.mkdir()
    for path in sample_paths("val")[:2]:
        shutil.copy(path, photos / path.name)
    monkeypatch.chdir(tmp_path)
    short = [o for o in SHORT if not o.startswith("trainer.max_epochs")]

    # the README's snippet, with fewer batches to be quick
    exp = Experiment(compose("demo", ["trainer.max_epochs=2", *short]))
    metrics = exp.fit()
    train_dir = exp.output_dir
    train_config = (train_dir / "config.yaml").read_bytes()
    exp.test(checkpoint=metrics["best_checkpoint"])
    test_dir = exp.output_dir
    exp.correct(checkpoint="best", correct_dir="my_photos/", root_dir="corrected/", overwrite=True)
    correct_dir = exp.output_dir

    for path in sample_paths("val")[:2]:
        assert Image.open(tmp_path / "corrected" / path.name).size == Image.open(path).size
    runs = tmp_path / "runs" / "demo"
    assert [d.relative_to(runs).parts[0] for d in (train_dir, test_dir, correct_dir)] == ["train", "test", "correct"]
    assert (train_dir / "config.yaml").read_bytes() == train_config  # the training run is left alone
    assert sorted(p.name for p in (train_dir / "checkpoints").iterdir())[-1] == "last.ckpt"
    for directory, verb in ((test_dir, "test"), (correct_dir, "correct")):
        assert OmegaConf.load(directory / "config.yaml").verb == verb
        assert not (directory / "checkpoints").exists()
    assert OmegaConf.load(correct_dir / "config.yaml").data.correct_dir == "my_photos/"


def test_an_output_dir_that_holds_a_run_is_refused(tmp_path: Path):
    first = Experiment(compose("demo", [*SHORT, "preflight_only=true"]))
    first.fit()
    before = sorted(p.name for p in first.output_dir.iterdir())
    with pytest.raises(ConfigError, match=r"paths.output_dir=.* already holds a run \(config.yaml, train.log\)"):
        Experiment(compose("demo", [*SHORT, f"paths.output_dir={first.output_dir}"]))
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="already holds files"):
        Experiment(compose("demo", [*SHORT, f"paths.output_dir={other}"]))
    # a given directory takes one run: a second verb would write into it
    given = Experiment(compose("demo", [*SHORT, f"paths.output_dir={tmp_path / 'given'}", "preflight_only=true"]))
    given.fit()
    with pytest.raises(ConfigError, match="already ran `train` in paths.output_dir="):
        given.test(checkpoint="last")
    assert sorted(p.name for p in first.output_dir.iterdir()) == before
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_a_verb_that_fails_before_it_starts_leaves_no_run_dir(tmp_path: Path):
    exp = Experiment(compose("demo", SHORT))
    with pytest.raises(CheckpointError, match="no training run of 'demo'"):
        exp.test(checkpoint="last")
    with pytest.raises(CheckpointError, match="no such file"):
        exp.cfg.checkpoint = str(tmp_path / "absent.ckpt")
        exp.fit()
    assert not (tmp_path / "runs").exists()


def test_a_targets_own_config_error_names_the_config_file(tmp_path):
    """A check inside the target (here the datamodule's) reaches the user unwrapped, with the
    config file it came from."""
    from m3l import compose
    from m3l.errors import ConfigError
    from m3l.engine.experiment import Experiment

    experiment = Experiment(compose("demo", [f"paths.runs_dir={tmp_path}", "data.batch_size=-1"]))
    with pytest.raises(
        ConfigError,
        match=r"data.batch_size must be an integer >= 1, got -1 \(building 'data' from data/samples_gaussian.yaml",
    ):
        experiment.data


@pytest.mark.parametrize("read_ahead", [0, 3])
def test_read_ahead_is_a_config_key_of_correct_and_test(tmp_path: Path, read_ahead: int):
    Experiment(compose("demo", SHORT)).fit()
    random_image(tmp_path / "in" / "x.png", (31, 17))
    corrector = Experiment(compose("demo", [*SHORT, f"read_ahead={read_ahead}"], verb="correct"))
    out = corrector.correct(checkpoint="last", correct_dir=tmp_path / "in", root_dir=tmp_path / "out")
    assert (out / "x.png").is_file()
    loaders = corrector.data.predict_dataloader()
    assert all(loader.read_ahead == read_ahead for loader in (loaders if isinstance(loaders, list) else [loaders]))
    tester = Experiment(compose("demo", [*SHORT, f"read_ahead={read_ahead}"], verb="test"))
    tester.test(checkpoint="last")
    loaders = tester.data.test_dataloader()
    assert all(loader.read_ahead == read_ahead for loader in (loaders if isinstance(loaders, list) else [loaders]))

    bad = Experiment(compose("demo", [*SHORT, "read_ahead=-1"], verb="correct"))
    with pytest.raises(ConfigError, match="read_ahead must be an integer >= 0, got -1"):
        bad.correct(checkpoint="last", correct_dir=tmp_path / "in", root_dir=tmp_path / "out2")
