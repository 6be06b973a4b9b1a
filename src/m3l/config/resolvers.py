"""m3l's OmegaConf resolvers that compute a value: ``${m3l.mul:a,b}``, ``m3l.sum``, ``m3l.sub``,
``m3l.div``, ``m3l.floordiv``, ``m3l.max``, ``m3l.min`` and ``${m3l.samples:split}`` (the
packaged sample images). They are registered, with the run directory's ``m3l.new_dir``, by
:func:`m3l.config.register_resolvers` when :mod:`m3l.config` is imported."""

from __future__ import annotations

import math


def _number(value: object) -> float | int:
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    try:
        return int(text)
    except ValueError:
        return float(text)


def _mul(*values: object) -> float | int:
    return math.prod(_number(v) for v in values)


def _sum(*values: object) -> float | int:
    return sum(_number(v) for v in values)


def _sub(a: object, b: object) -> float | int:
    return _number(a) - _number(b)


def _div(a: object, b: object) -> float:
    return _number(a) / _number(b)


def _floordiv(a: object, b: object) -> int:
    return int(_number(a) // _number(b))


def _max(*values: object) -> float | int:
    return max(_number(v) for v in values)


def _min(*values: object) -> float | int:
    return min(_number(v) for v in values)


def _samples(split: str = "train") -> str:
    from m3l.data.samples import sample_dir

    return str(sample_dir(split))


#: resolver name -> function (``m3l.new_dir`` is added by :mod:`m3l.config`, with the run directory)
VALUE_RESOLVERS = {
    "m3l.mul": _mul,
    "m3l.sum": _sum,
    "m3l.sub": _sub,
    "m3l.div": _div,
    "m3l.floordiv": _floordiv,
    "m3l.max": _max,
    "m3l.min": _min,
    "m3l.samples": _samples,
}
