"""The test suite itself never reads or writes the user's caches, configs, runs or trackers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env


def test_this_process_sees_none_of_the_user_environment() -> None:
    root = Path(os.environ["HOME"]).parent
    assert root.name.startswith("m3l-tests-")
    for name in ("M3L_CONFIG_PATH", "M3L_CACHE_DIR", "TORCH_HOME", "MLFLOW_TRACKING_URI"):
        assert name not in os.environ, name
    import torch.hub

    from m3l.weights import hub

    assert Path(torch.hub.get_dir()).is_relative_to(root)
    assert hub.cache_dir().is_relative_to(root)


def test_cli_env_drops_the_user_environment_but_keeps_what_a_test_asks_for(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", "/somewhere/else")
    monkeypatch.setenv("M3L_CACHE_DIR", "/somewhere/else")
    env = cli_env(tmp_path, M3L_CACHE_DIR=str(tmp_path / "cache"))
    assert "TORCH_HOME" not in env and env["M3L_CACHE_DIR"] == str(tmp_path / "cache")
    assert env["HOME"] == str(tmp_path / "home")


@pytest.mark.slow
def test_the_suite_passes_and_leaves_the_users_places_alone(tmp_path: Path) -> None:
    """Run real tests (a CLI export cached in torch's hub dir, the config search path) with every
    place the user's environment names pointing at folders of the user's: they pass, and the
    folders stay as they were."""
    user = {name: tmp_path / "user" / name.lower() for name in ("TORCH_HOME", "M3L_CACHE_DIR", "M3L_RUNS_DIR")}
    for path in user.values():
        path.mkdir(parents=True)
    configs = tmp_path / "user" / "configs" / "net"
    configs.mkdir(parents=True)  # a user config that would break the packaged net if it were read
    (configs / "dncnn_small.yaml").write_text("_target_: no.such.Net\n")
    env = dict(
        os.environ,
        **{name: str(path) for name, path in user.items()},
        M3L_CONFIG_PATH=str(configs.parent),
        MLFLOW_TRACKING_URI=(tmp_path / "user" / "mlruns").as_uri(),
        XDG_CONFIG_HOME=str(tmp_path / "user" / "xdg"),
    )
    tests = [
        "tests/e2e/test_correct_backends.py::test_onnx_backend_writes_what_eager_writes",
        "tests/engine/test_experiment.py::test_fit_test_correct_from_python",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert not (tmp_path / "user" / "mlruns").exists() and not (tmp_path / "user" / "xdg").exists()
    for name, path in user.items():
        assert not any(path.iterdir()), f"a test wrote into the user's {name}: {sorted(path.rglob('*'))}"
