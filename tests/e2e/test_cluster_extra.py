"""`cluster=NAME` without the slurm extra names the extra to install (not "no such config")."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import cli_env, run_cli


def test_cluster_without_the_slurm_extra_names_it(tmp_path: Path, workdir: Path) -> None:
    # Hydra's submitit launcher made unimportable, as on an install without m3l[slurm]
    hidden = tmp_path / "hidden" / "hydra_plugins" / "hydra_submitit_launcher"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("not installed (for this test)")\n')
    env = cli_env(tmp_path, PYTHONPATH=str(tmp_path / "hidden"))
    result = run_cli("train", "model=demo", "cluster=vulcan", cwd=workdir, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("m3l: error:")]
    assert 'pip install "m3l[slurm]"' in line and "Traceback" not in result.stderr, result.stderr[-3000:]
