"""Command-line overrides are read by Hydra's own parser (issue 28 item 6), not by splitting
strings: quoting, ``+``/``++``/``~``, ``@package`` and sweeps mean what they mean to Hydra."""

from __future__ import annotations

from pathlib import Path

from m3l.config.overrides import normalize_overrides, override_key, override_value
from tests.conftest import cli_env, run_cli


def test_values_are_read_as_hydra_reads_them():
    assert override_value(["model='demo'"], "model") == "demo"  # quotes are Hydra's, not the value's
    assert override_value(['paths.runs_dir="/a b/runs"'], "paths.runs_dir") == "/a b/runs"
    assert override_value(["paths.runs_dir=${oc.env:NOPE}/x"], "paths.runs_dir") == "${oc.env:NOPE}/x"
    assert override_value(["model=a,b"], "model") is None  # a sweep has no one value
    assert override_value(["hydra.run.dir=null"], "hydra.run.dir") is None
    assert override_value(["trainer=cpu", "+model=demo", "model=other"], "model") == "demo"
    assert override_value(["model@x=demo"], "model") is None  # another package
    assert override_key("~trainer.benchmark") == "trainer.benchmark" and override_key("-m") is None
    assert override_key("bad=[") is None  # Hydra's to report


def test_trainer_keys_follow_hydras_reading():
    assert normalize_overrides(["trainer.max_epochs='3'", "trainer.max_epochs@pkg=3", "trainer.max_epochs=1,2"]) == [
        "++trainer.max_epochs='3'",
        "trainer.max_epochs@pkg=3",
        "++trainer.max_epochs=1,2",
    ]
    assert normalize_overrides(["data.correct_dir='/in'", "++data.correct_dir=/in", "data.correct_dir=[1"]) == [
        "++data.correct_dir='/in'",
        "++data.correct_dir=/in",
        "data.correct_dir=[1",
    ]


def test_a_quoted_output_folder_is_checked_before_hydra_starts(tmp_path: Path):
    """``paths.output_dir='<a folder holding a run>'``: the folder named inside the quotes is the
    one checked (and refused), not a path with quote characters in its name."""
    taken = tmp_path / "taken run"
    taken.mkdir()
    (taken / "config.yaml").write_text("x: 1\n")
    result = run_cli(
        "train",
        "model=demo",
        f"paths.output_dir='{taken}'",
        "trainer.max_epochs=1",
        cwd=tmp_path,
        env=cli_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"paths.output_dir={taken} already holds a run (config.yaml)" in result.stderr
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("'*"))
