"""Bad input on the command line: one clear message, no traceback wall, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import OWN_CODE, run_cli

pytestmark = pytest.mark.slow


def _clean_failure(result, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_no_model_lists_packaged_and_user_models(user, workdir):
    env, configs, _ = user
    stderr = _clean_failure(run_cli("train", cwd=workdir, env=env))
    assert "model=NAME" in stderr
    assert "demo" in stderr and "(packaged)" in stderr
    assert "my_model" in stderr and str(configs / "model" / "my_model.yaml") in stderr


def test_unknown_model_names_the_options(user, workdir):
    env, _, _ = user
    stderr = _clean_failure(run_cli("train", "model=my_modle", cwd=workdir, env=env))
    assert "model=my_modle: no such model config. Did you mean `my_model`?" in stderr


def test_typo_in_override_key(user, workdir):
    env, _, common = user
    stderr = _clean_failure(run_cli("train", *common, "trainer.max_epoch=3", cwd=workdir, env=env))
    assert "trainer.max_epoch" in stderr and "Did you mean `max_epochs`?" in stderr
    assert "+trainer.max_epoch" not in stderr  # not Hydra's hint to add the key


def test_missing_required_value_names_key_and_file(user, workdir):
    env, _, _ = user
    stderr = _clean_failure(run_cli("train", "model=my_model", cwd=workdir, env=env))
    assert "data.root_dir" in stderr and "data/my_dataset.yaml" in stderr and "data.root_dir=..." in stderr


def test_target_that_does_not_import(user, workdir):
    env, configs, common = user
    (configs / "net" / "my_net.yaml").write_text("_target_: my_library.nets_typo.MyRestorationNetwork\n")
    stderr = _clean_failure(run_cli("train", *common, cwd=workdir, env=env))
    assert "net/my_net.yaml" in stderr and "my_library.nets_typo" in stderr and "PYTHONPATH" in stderr


def test_checkpoint_that_does_not_exist(user, workdir, tmp_path):
    env, _, common = user
    stderr = _clean_failure(run_cli("test", *common, f"checkpoint={tmp_path / 'nope.ckpt'}", cwd=workdir, env=env))
    assert "nope.ckpt" in stderr and "no such file" in stderr


def test_checkpoint_last_without_a_run(user, workdir):
    env, _, common = user
    stderr = _clean_failure(run_cli("test", *common, "checkpoint=last", cwd=workdir, env=env))
    assert "no training run of 'my_network'" in stderr


def _save_checkpoint(path: Path, state: dict, extra: object | None = None) -> Path:
    payload = {"state_dict": state}
    if extra is not None:
        payload["extra"] = extra
    torch.save(payload, path)
    return path


class NotWeights:
    """A pickled object: loading it with weights_only=False could run code."""


def _net_state(width: int) -> dict:
    import sys

    sys.path.insert(0, str(OWN_CODE))
    try:
        from my_library.net import MyRestorationNetwork
    finally:
        sys.path.remove(str(OWN_CODE))
    return MyRestorationNetwork(n_layers=5, width=width).state_dict()


def test_checkpoint_of_another_net(user, workdir, tmp_path):
    env, _, common = user
    checkpoint = _save_checkpoint(tmp_path / "other.ckpt", _net_state(width=16))
    stderr = _clean_failure(run_cli("test", *common, f"checkpoint={checkpoint}", cwd=workdir, env=env))
    assert "does not match" in stderr and "shape mismatches" in stderr and "(16, 3, 3, 3)" in stderr


def test_checkpoint_with_pickled_objects_is_refused(user, workdir, tmp_path):
    env, _, common = user
    checkpoint = _save_checkpoint(tmp_path / "pickled.ckpt", _net_state(width=32), extra=NotWeights())
    stderr = _clean_failure(run_cli("test", *common, f"checkpoint={checkpoint}", cwd=workdir, env=env))
    assert "checkpoint_trusted=true" in stderr


@pytest.mark.parametrize("verb", ["test", "train"])
def test_planted_pickle_runs_no_code_even_with_force_no_weights_only(user, workdir, tmp_path, verb):
    from tests.weights.test_checkpoints import plant

    env, _, common = user
    target = tmp_path / "pwned"
    checkpoint = plant(tmp_path / "planted.ckpt", target)
    env = {**env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    stderr = _clean_failure(run_cli(verb, *common, f"checkpoint={checkpoint}", cwd=workdir, env=env))
    assert "planted.ckpt" in stderr and "checkpoint_trusted=true" in stderr
    assert not target.exists()


def test_jpeg_as_checkpoint_is_not_a_checkpoint(user, workdir, tmp_path):
    from PIL import Image

    env, _, common = user
    Image.new("RGB", (32, 24), (10, 120, 200)).save(tmp_path / "photo.jpg")
    stderr = _clean_failure(run_cli("test", *common, f"checkpoint={tmp_path / 'photo.jpg'}", cwd=workdir, env=env))
    assert "photo.jpg is not a checkpoint" in stderr and "JPEG" in stderr
    assert "checkpoint_trusted" not in stderr


def test_bad_safetensors_checkpoint_is_one_error_line(workdir, env, tmp_path):
    """A JPEG renamed .safetensors is named, not a SafetensorError traceback."""
    from tests.conftest import random_image
    from tests.weights.test_checkpoints import bad_safetensors

    checkpoint = bad_safetensors(tmp_path / "photo.safetensors", "jpeg")
    random_image(tmp_path / "inputs" / "a.png", (20, 16))
    result = run_cli(
        "correct",
        "model=demo",
        f"checkpoint={checkpoint}",
        f"data.correct_dir={tmp_path / 'inputs'}",
        f"serializer.root_dir={tmp_path / 'out'}",
        cwd=workdir,
        env=env,
    )
    stderr = _clean_failure(result)
    errors = [line for line in stderr.splitlines() if line.startswith("m3l: error:")]
    assert len(errors) == 1 and "photo.safetensors is not a readable safetensors file" in errors[0], stderr


def test_existing_run_directory_is_never_reused(user, workdir, tmp_path):
    env, _, common = user
    existing = tmp_path / "precious"
    existing.mkdir()
    (existing / "results.txt").write_text("keep me")
    stderr = _clean_failure(run_cli("train", *common, f"hydra.run.dir={existing}", cwd=workdir, env=env))
    assert "already holds files" in stderr
    assert sorted(p.name for p in existing.iterdir()) == ["results.txt"]
    assert (existing / "results.txt").read_text() == "keep me"


def test_cluster_launch_is_multirun(user, workdir):
    env, _, common = user
    result = run_cli("train", "--cluster-launch", *common, "debug=fdr", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    sweeps = list((Path(env["M3L_RUNS_DIR"]) / "my_network" / "train" / "multirun").iterdir())
    assert len(sweeps) == 1 and (sweeps[0] / "0" / "config.yaml").is_file()
