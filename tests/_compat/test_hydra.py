"""Canaries of :mod:`m3l._compat.hydra`."""

from __future__ import annotations

import subprocess
import sys

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus

from m3l._compat import hydra as compat
from tests._compat import canary

_FAILING_JOB = """
from m3l._compat.hydra import report_and_exit

def user_code():
    raise ValueError("boom in user code")

def run_job():  # the frame Hydra trims the traceback at
    user_code()

try:
    run_job()
except ValueError as exc:
    report_and_exit(exc)
print("still running")
"""


def test_report_and_exit():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    with canary("Hydra", "how it reports a failed job (hydra._internal.utils.run_and_report)", "hydra.report_and_exit"):
        done = subprocess.run(
            [sys.executable, "-c", _FAILING_JOB], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1, f"exit status {done.returncode}: {done.stderr[-500:]}"
        assert "still running" not in done.stdout
        assert "ValueError: boom in user code" in done.stderr and "in user_code" in done.stderr, done.stderr
        assert "in run_job" not in done.stderr, "the traceback is not trimmed to the user's frames"
        assert "HYDRA_FULL_ERROR=1" in done.stderr, done.stderr


def test_job_return_value():
    error = RuntimeError("trial failed")
    with canary("Hydra", "what a job returns (JobReturn._return_value)", "hydra.job_return_value"):
        failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
        assert compat.job_return_value(failed) is error
        completed = JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)
        assert compat.job_return_value(completed) == 0.5 == completed.return_value


def test_override_value_text():
    with canary(
        "Hydra", "how an override's value is written (Override._get_value_element_as_str)", "hydra.override_value_text"
    ):
        override = OverridesParser.create().parse_overrides(["x=choice({a:1,b:[2,3]},[4,'five'])"])[0]
        texts = [compat.override_value_text(override, v) for v in override.value().list]
        assert texts == ["{a:1,b:[2,3]}", "[4,'five']"], texts
        again = [OverridesParser.create().parse_overrides([f"x={t}"])[0].value() for t in texts]
        assert again == [{"a": 1, "b": [2, 3]}, [4, "five"]], "the text does not parse back to the value"
