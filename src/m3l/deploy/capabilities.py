"""What this machine and this install can run: the CPU's bf16 and int8 dot-product units (from
``/proc/cpuinfo``) and whether ONNX export and ONNX Runtime are importable. The backend choice
(:mod:`m3l.deploy.backends`) tries only what they allow."""

from __future__ import annotations

from pathlib import Path


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 dot-product units (AVX512-BF16 or AMX), from /proc/cpuinfo."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_int8() -> bool:
    """Whether the CPU has int8 dot-product units (AVX512-VNNI, AVX-VNNI or AMX), from /proc/cpuinfo."""
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def onnx_unavailable() -> str | None:
    """None when ONNX export and runtime are importable, else why not."""
    import importlib.util

    missing = [name for name in ("onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(missing)} not installed (pip install 'm3l[export]')" if missing else None
