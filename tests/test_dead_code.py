"""Issue 28 item 6: no second copy of a helper, no dead shim, no dependency for nothing.

Each test names what it keeps out; docs/architecture.md ("Known debts") says why what is left
stays."""

from __future__ import annotations

import ast
import hashlib
import importlib
import warnings

import pytest

from tests.conftest import REPO

SRC = REPO / "src" / "m3l"

#: the places that compute a SHA-256 themselves, and why each is not a file's hash
OWN_SHA256 = {
    "deploy/runtime.py": "sha256_of, the one file hash (the runtime imports nothing from m3l)",
    "deploy/onnx_backend.py": "weights_key hashes tensors in memory, not a file",
    "weights/hub.py": "download() names a cache file after a URL, and records the hash of bytes held in memory",
    "data/datasets.py": "stable_seed hashes text into a seed",
}


def _sha256_calls() -> dict[str, int]:
    found: dict[str, int] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "sha256"
                and isinstance(node.value, ast.Name)
                and node.value.id == "hashlib"
            ):
                name = path.relative_to(SRC).as_posix()
                found[name] = found.get(name, 0) + 1
    return found


def test_a_file_sha256_is_computed_in_one_place(tmp_path):
    from m3l.weights import hub
    from m3l.deploy import export, runtime

    found = _sha256_calls()
    extra = sorted(set(found) - set(OWN_SHA256))
    assert not extra, f"hashlib.sha256 used in {extra}: hash files with m3l.deploy.runtime.sha256_of"
    assert hub.sha256_of is runtime.sha256_of and not hasattr(export, "_sha256")
    data = bytes(range(256)) * 5000  # over one read chunk
    (tmp_path / "f").write_bytes(data)
    assert hub.sha256_of(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert hub.sha256_of(str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()


def test_metric_fn_is_gone():
    """``MetricFn`` was an alias nothing used (a task's metrics are any callables)."""
    import m3l.mtl.tasks as tasks

    assert not hasattr(tasks, "MetricFn")
    assert "MetricFn" not in "".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))


SHIMS = {  # old import path -> (what it re-exports, the path to write now)
    "m3l.deploy.tiling": ("TiledPredictor", "m3l.models.tiling"),
    "m3l.mtl.algorithms.equal": ("EqualWeighting", "m3l.mtl.algorithms"),
}


@pytest.mark.slow
def test_shims_kept_for_old_configs_warn_and_nothing_of_m3l_imports_them():
    """``m3l.deploy.tiling`` and ``m3l.mtl.algorithms.equal`` stay for configs and code written for
    m3l 0.1; importing one says it is deprecated and what to write instead, and m3l's own code
    never imports them (so a user who does not name them never sees the warning)."""
    import subprocess
    import sys

    for old, (name, new) in SHIMS.items():
        code = (
            "import warnings, importlib\n"
            "warnings.simplefilter('error', FutureWarning)\n"
            f"import m3l.mtl.algorithms, m3l.models.tiling, {new}\n"  # the new homes: no warning
            "try:\n"
            f"    importlib.import_module({old!r})\n"
            "except FutureWarning as w:\n"
            "    print(w)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"{old} is deprecated" in out.stdout and f"{new}.{name}" in out.stdout, out.stdout
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            old_module = importlib.import_module(old)
        assert getattr(old_module, name) is getattr(importlib.import_module(new), name)
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not set(names) & set(SHIMS), f"{path.relative_to(SRC)} imports a deprecated alias"
