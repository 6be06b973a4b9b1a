"""Under CI (``M3L_CI=1``, set by ``.ci/run``) a skipped test is a failure.

``.ci/run`` installs everything the tests use: Slurm (a one-node cluster), MLflow (its server
included), LibMTL, Chromium, the Fashion-MNIST Debian package and every extra of
``m3l[test]``. A skip there means an install broke, and CI would pass while testing less. On a
developer's machine the same tests skip with their reason, as before.

Only what a CI machine cannot have may skip there: :data:`CI_MAY_SKIP` lists those reasons.
A test that skips fails; a module that skips as a whole is listed at the end of the run and
fails it. ``tests/conftest.py`` imports these hooks; ``pytest -p tests.ci_skips`` loads them too.
"""

from __future__ import annotations

import os
import re

import pytest

# read on import: tests/conftest.py then drops the M3L_* variables from the test environment
CI = os.environ.get("M3L_CI") == "1"

CI_MAY_SKIP = re.compile(
    "|".join(
        [
            r"\bCUDA\b|\bGPUs?\b",  # CI has no GPU
            r"this CPU has no \w+ units",  # the CI machine's processor decides
            r"root writes into read-only folders",  # CI runs as root
            r"random order: same distribution",  # by design, for some of the test's parameters
            r"large net: built once",  # by design, for some of the test's parameters
        ]
    ),
    re.IGNORECASE,
)


def _reason(longrepr: object) -> str:
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def _must_run(report: pytest.TestReport | pytest.CollectReport) -> bool:
    return (
        CI and report.skipped and not hasattr(report, "wasxfail") and not CI_MAY_SKIP.search(_reason(report.longrepr))
    )


def _failure(reason: str) -> str:
    return (
        f"skipped under CI (M3L_CI=1), which must run every test: {reason}\n"
        "Install what it needs in .ci/run, or add the reason to CI_MAY_SKIP in tests/ci_skips.py "
        "if no CI machine can have it."
    )


_skipped_modules: list[tuple[str, str]] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    if _must_run(report):
        report.outcome, report.longrepr = "failed", _failure(_reason(report.longrepr))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    """A module skipped as a whole stays a skip (an error here would stop the whole run at
    collection) and fails the session at its end instead."""
    report = yield
    if _must_run(report):
        _skipped_modules.append((report.nodeid, _reason(report.longrepr)))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _skipped_modules:
        terminalreporter.section("modules skipped under CI", red=True)
        for nodeid, reason in _skipped_modules:
            terminalreporter.line(f"FAILED {nodeid}: {_failure(reason)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_modules and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
