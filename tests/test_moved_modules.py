"""The module paths of m3l 0.1 that moved into folders (``m3l/_moved.py``): each still imports,
as the very module of its new path, with a ``FutureWarning`` naming that path; and m3l, its
tests, configs and docs use the new paths only."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from m3l._moved import MOVED
from tests.conftest import REPO


def test_every_old_path_is_the_new_module_with_a_warning() -> None:
    # one fresh interpreter for all of them: the first import of each path is the one that warns
    code = (
        "import importlib, json, sys, warnings\n"
        "from m3l._moved import MOVED\n"
        "warnings.simplefilter('always')\n"
        "report = {}\n"
        "for old, new in MOVED.items():\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        module = importlib.import_module(old)\n"
        "    report[old] = [module is importlib.import_module(new), module.__spec__.name,\n"
        "                   [str(w.message) for w in caught if w.category is FutureWarning]]\n"
        "print(json.dumps(report))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert sorted(report) == sorted(MOVED)
    for old, (same, spec_name, warned) in report.items():
        new = MOVED[old]
        assert same and spec_name == new, f"{old}: not the module {new} ({spec_name})"
        assert any(f"{old} moved to {new}" in message for message in warned), f"{old}: no FutureWarning ({warned})"


def test_a_config_written_for_0_1_still_builds_its_target() -> None:
    code = (
        "import warnings\n"
        "warnings.simplefilter('error', FutureWarning)\n"
        "import m3l\n"
        "from hydra.utils import get_class\n"
        "try:\n"
        "    get_class('m3l.tracking.MLFlowLogger')\n"
        "except Exception as error:\n"
        "    print('refused:', error)\n"
        "warnings.simplefilter('ignore', FutureWarning)\n"
        "print(get_class('m3l.tracking.MLFlowLogger').__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "m3l.tracking moved to m3l.records.tracking" in out.stdout
    assert out.stdout.strip().endswith("m3l.records.tracking")


def test_m3l_uses_the_new_paths_only() -> None:
    names = "|".join(name.split(".", 1)[1] for name in MOVED)
    old = re.compile(rf"(?<![\w.])m3l\.({names})\b(?!\.py)|from m3l import .*\b({names})\b")
    allowed = {REPO / "src/m3l/_moved.py", REPO / "tests/test_moved_modules.py"}
    found = []
    for root in ("src", "tests", "benchmarks", "docs", "examples", "hubconf.py", "README.md"):
        for path in [REPO / root, *(REPO / root).rglob("*")]:
            if not path.is_file() or path.suffix not in {".py", ".md", ".yaml"} or path in allowed:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if old.search(line) and "moved to" not in line and "m3l 0.1" not in line:
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "old module paths (see m3l/_moved.py for the new ones):\n" + "\n".join(found)
