"""Issue 28 item 6: no second copy of a helper, no dead shim, no dependency for nothing.

Each test names what it keeps out; docs/architecture.md ("Known debts") says why what is left
stays."""

from __future__ import annotations

import ast
import hashlib

from tests.conftest import REPO

SRC = REPO / "src" / "m3l"

#: the places that compute a SHA-256 themselves, and why each is not a file's hash
OWN_SHA256 = {
    "deploy/runtime.py": "sha256_of, the one file hash (the runtime imports nothing from m3l)",
    "deploy/onnx_backend.py": "weights_key hashes tensors in memory, not a file",
    "hub.py": "download() names a cache file after a URL, and records the hash of bytes held in memory",
    "data/datasets.py": "stable_seed hashes text into a seed",
}


def _sha256_calls() -> dict[str, int]:
    found: dict[str, int] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "sha256" and isinstance(node.value, ast.Name) \
                    and node.value.id == "hashlib":
                name = path.relative_to(SRC).as_posix()
                found[name] = found.get(name, 0) + 1
    return found


def test_a_file_sha256_is_computed_in_one_place(tmp_path):
    from m3l import hub
    from m3l.deploy import export, runtime

    found = _sha256_calls()
    extra = sorted(set(found) - set(OWN_SHA256))
    assert not extra, f"hashlib.sha256 used in {extra}: hash files with m3l.deploy.runtime.sha256_of"
    assert hub.sha256_of is runtime.sha256_of and not hasattr(export, "_sha256")
    data = bytes(range(256)) * 5000  # over one read chunk
    (tmp_path / "f").write_bytes(data)
    assert hub.sha256_of(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert hub.sha256_of(str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()
