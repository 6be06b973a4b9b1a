"""Library internals are reached in ``m3l/_compat/`` only: ruff's private-member rule (SLF001,
configured in ``pyproject.toml``) over the repository, and what that rule cannot see (a private
module or name imported, a private attribute named in a string) over ``src/``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src"
COMPAT = SRC / "m3l" / "_compat"
LIBRARIES = (
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "torch",
    "hydra",
    "optuna",
    "mlflow",
    "omegaconf",
    "submitit",
)
#: m3l's own attributes on objects it does not own (as ruff's extend-ignore-names in pyproject.toml)
OWN = {"_m3l_means", "_m3l_records", "_m3l_remembers"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def _foreign(module: str) -> bool:
    return module.split(".")[0] in LIBRARIES


def _reaches(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [
                f"{where} import {a.name}"
                for a in node.names
                if _foreign(a.name) and any(_private(p) for p in a.name.split("."))
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and _foreign(node.module):
            if any(_private(p) for p in node.module.split(".")) or any(_private(a.name) for a in node.names):
                found.append(f"{where} from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _foreign(node.value):
            if any(_private(p) for p in node.value.split(".")[1:]) and " " not in node.value:
                found.append(f"{where} {node.value!r}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
        ):
            target, name = node.args[0], node.args[1]
            if (
                isinstance(name, ast.Constant)
                and isinstance(name.value, str)
                and _private(name.value)
                and name.value not in OWN
                and not (isinstance(target, ast.Name) and target.id in ("self", "cls"))
            ):
                found.append(f"{where} {node.func.id}(..., {name.value!r})")
    return found


def test_ruff_private_member_rule_passes():
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(REPO)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        "a private member is reached outside m3l._compat; give it a named function there:\n" + done.stdout + done.stderr
    )


def test_no_private_import_or_string_access_outside_compat():
    found = [hit for path in sorted(SRC.rglob("*.py")) if COMPAT not in path.parents for hit in _reaches(path)]
    assert not found, "library internals reached outside m3l._compat (put each behind a function there):\n" + "\n".join(
        found
    )
