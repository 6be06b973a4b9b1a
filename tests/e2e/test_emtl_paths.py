"""The paths EMTL users take (issue 27, items 7-10), end to end.

A user's own script, written the way EMTL's README and docs/migrating.md show: decorated
backbone and head, a dataset of ``(input, target)`` pairs, ``mlflow.set_tracking_uri`` /
``mlflow.set_experiment`` before the launch, tags through ``MLFlowLogger(tags=...)``. Each
launch is a separate Python process, as a user's runs are; the MLflow store is a real sqlite
file read back with MLflow's own client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

pytestmark = pytest.mark.slow

USER_SCRIPT = '''
"""An EMTL user's training script, ported to m3l."""
import argparse
import json

import mlflow
import torch
from torch import nn
from torch.utils.data import Dataset

from m3l import mtl
from m3l.mtl.artifacts import read_card, save_head
from m3l.records.tracking import MLFlowLogger


@mtl.backbone(out_channels=8)
class Trunk(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, width), nn.ReLU())

    def forward(self, x):
        return self.net(x)


@mtl.head(in_channels="in_features")
class Head(nn.Module):
    def __init__(self, in_features: int = 8, classes: int = 3):
        super().__init__()
        self.in_features = in_features
        self.fc = nn.Linear(in_features, classes)

    def forward(self, x):
        return self.fc(x)


class Points(Dataset):
    """(input, target) pairs; with three=True (input, target, index), which no task reads."""

    def __init__(self, n, seed, three=False):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = (self.x[:, 0] > 0).long() + (self.x[:, 1] > 0).long()
        self.three = three

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (self.x[i], self.y[i], i) if self.three else (self.x[i], self.y[i])


parser = argparse.ArgumentParser()
parser.add_argument("--uri", required=True)
parser.add_argument("--root", required=True)
parser.add_argument("--max-epochs", type=int)
parser.add_argument("--run-id")
parser.add_argument("--algorithm", default="alternating")
parser.add_argument("--tags", default="")
parser.add_argument("--three", action="store_true")
parser.add_argument("--save-head")
args = parser.parse_args()

mlflow.set_tracking_uri(args.uri)
mlflow.set_experiment("EMTL Example")
torch.manual_seed(0)
tasks = [
    mtl.Task("first", Head(), nn.CrossEntropyLoss(), train=Points(64, 1, args.three), test=Points(32, 2), batch_size=16),
    mtl.Task("second", Head(), nn.CrossEntropyLoss(), train=Points(64, 3), test=Points(32, 4), batch_size=16),
]
algorithm = {
    "alternating": mtl.Alternating(),
    "sequential1": mtl.Sequential(epochs_per_task=1),
    "sequential2": mtl.Sequential(epochs_per_task=2),
}[args.algorithm]
extra = {"logger": MLFlowLogger(tags=json.loads(args.tags))} if args.tags else {}
trainer = mtl.Trainer(Trunk(), tasks, max_epochs=args.max_epochs, mlflow=True, root_dir=args.root,
                      accelerator="cpu", enable_progress_bar=False, **extra)
results = trainer.launch(algorithm, run_id=args.run_id)
out = {"run_id": results.run_id, "log_dir": str(results.log_dir), "epoch": results.module.current_epoch,
       "checkpoint": str(results.checkpoint) if results.checkpoint else None}
if args.save_head:
    path = save_head(results.module.objectives[0].head, args.save_head)
    out["card"] = read_card(path)
print("RESULT " + json.dumps(out))
'''


@pytest.fixture
def user(tmp_path: Path):
    """Run the user's script in a process of its own; returns (run, tracking URI)."""
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'm3l[mlflow]')")
    script = tmp_path / "emtl_user.py"
    script.write_text(USER_SCRIPT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = cli_env(tmp_path)

    def run(*args: str, ok: bool = True) -> dict | subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, str(script), "--uri", uri, "--root", str(tmp_path / "runs"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if not ok:
            return done
        assert done.returncode == 0, done.stderr[-4000:]
        (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        return json.loads(line[len("RESULT ") :])

    return run, uri


def _runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("EMTL Example")
    return client, client.search_runs([experiment.experiment_id])


def test_resume_by_either_run_id_to_train_longer_logs_what_changed_in_one_mlflow_run(user):
    """Items 7 and 8: one run id (MLflow's) that resumes; one MLflow run per launch, the
    user's MLFlowLogger tags on it; a longer resume logs the change, never MLflow's error."""
    run, uri = user
    first = run("--max-epochs", "2", "--tags", '{"team": "vision"}')
    client, runs = _runs(uri)
    (mlrun,) = runs  # the user's MLFlowLogger and mlflow=True: one MLflow run
    assert first["run_id"] == mlrun.info.run_id and mlrun.data.tags["team"] == "vision"
    assert mlrun.data.params["max_epochs"] == "2" and first["epoch"] == 2

    longer = run("--max-epochs", "3", "--run-id", first["run_id"], "--tags", '{"team": "vision"}')
    assert longer["run_id"] == first["run_id"] and longer["epoch"] == 3 and longer["checkpoint"]
    assert Path(longer["log_dir"]) != Path(first["log_dir"])
    client, runs = _runs(uri)
    (mlrun,) = runs
    assert mlrun.data.params["max_epochs"] == "2" and mlrun.data.params["max_epochs.resume_1"] == "3"
    assert mlrun.data.tags["m3l.resume_1"] == "max_epochs: 2 -> 3"
    assert mlrun.data.tags["m3l.run_dir"] == str(Path(longer["log_dir"]).resolve())

    # the first launch's directory name resumes the same run (mlflow=True only, no logger)
    again = run("--max-epochs", "4", "--run-id", Path(first["log_dir"]).name)
    assert again["run_id"] == first["run_id"] and again["epoch"] == 4
    client, runs = _runs(uri)
    (mlrun,) = runs
    assert mlrun.data.params["max_epochs.resume_2"] == "4"
    assert mlrun.data.tags["m3l.resume_2"] == "max_epochs: 3 -> 4"
    assert {"config.yaml", "config.resume_1.yaml", "config.resume_2.yaml"} <= {
        a.path for a in client.list_artifacts(mlrun.info.run_id)
    }
    history = client.get_metric_history(mlrun.info.run_id, "epoch")
    assert {0, 1, 2, 3} <= {int(m.value) for m in history}  # four epochs trained, one run


def test_runs_that_differ_in_epochs_per_task_log_different_params(user):
    """Item 9: the algorithm with all its arguments, and the epochs the run trains."""
    run, uri = user
    one, two = run("--algorithm", "sequential1"), run("--algorithm", "sequential2")
    client = _runs(uri)[0]
    p1, p2 = (client.get_run(r["run_id"]).data.params for r in (one, two))
    assert p1["algorithm"] == "Sequential(method=EqualWeighting(), epochs_per_task=1, order=None)"
    assert p2["algorithm"] == "Sequential(method=EqualWeighting(), epochs_per_task=2, order=None)"
    assert (p1["max_epochs"], p2["max_epochs"]) == ("2", "4")
    assert (one["epoch"], two["epoch"]) == (2, 4)


def test_three_tuple_samples_are_refused_and_save_head_needs_no_task(user, tmp_path):
    """Item 10: a sample the task cannot read is refused before training, naming the task;
    save_head takes its task from the file name when it is not given."""
    run, _ = user
    refused = run("--max-epochs", "1", "--three", ok=False)
    assert refused.returncode != 0
    assert (
        "DatasetStructureError: task 'first': train dataset 'Points' yields a tuple of length 3." in refused.stderr
    ), refused.stderr[-3000:]
    assert "expected: (input, target)" in refused.stderr
    assert not list((tmp_path / "runs").rglob("*.ckpt"))

    saved = run("--max-epochs", "1", "--save-head", str(tmp_path / "heads" / "first"))
    assert saved["card"]["task"] == "first" and saved["card"]["head"] == "first"
