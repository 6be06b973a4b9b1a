"""The one-node Slurm cluster of the e2e tests: started by ``.ci/setup-slurm.sh`` (CI runs
it before pytest; the fixture runs it too when Slurm is installed but not up and we are
root). When Slurm cannot be used, :func:`slurm_unavailable` says why and the tests skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SETUP_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "setup-slurm.sh"


def _node_state() -> str | None:
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def slurm_unavailable() -> str | None:
    """None when a Slurm node takes jobs, else the reason it cannot be used."""
    state = _node_state()
    if state is None and SETUP_SCRIPT.is_file() and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=900)
        state = _node_state()
    if state is None:
        if shutil.which("sinfo") is None:
            return "Slurm is not installed (run .ci/setup-slurm.sh as root: apt-get install slurm-wlm munge)"
        return "Slurm does not answer (sinfo failed); see /var/log/slurm/ or run .ci/setup-slurm.sh"
    if not state.startswith(("idle", "mixed", "allocated")):
        return f"the Slurm node is {state}, not taking jobs"
    return None


def wait_for_job_state(job_id: str, states: tuple[str, ...], timeout: float = 300) -> str:
    """Poll ``scontrol show job`` until the job is in one of ``states``; returns the state."""
    deadline = time.monotonic() + timeout
    state = "?"
    while time.monotonic() < deadline:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
        fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
        state = fields.get("JobState", "?")
        if state in states:
            return state
        time.sleep(0.5)
    raise TimeoutError(f"Slurm job {job_id} stayed {state}, not {states}, for {timeout} s")


def release_requeued_job(job_id: str, timeout: float = 120) -> None:
    """Start a requeued job now instead of after Slurm's requeue delay (its BeginTime)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
        fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
        if fields.get("JobState") != "PENDING" and fields.get("JobState") not in ("REQUEUED", "REQUEUE_HOLD"):
            return
        if fields.get("JobState") == "PENDING":
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], capture_output=True)
        time.sleep(1)
    raise TimeoutError(f"the requeued Slurm job {job_id} did not start within {timeout} s")
