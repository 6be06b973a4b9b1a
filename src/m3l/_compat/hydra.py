"""Hydra's private parts that m3l uses, one function each (see :mod:`m3l._compat`).

Checked on hydra-core 1.3.8 (``pyproject.toml`` allows 1.3.x only).
"""

from __future__ import annotations

from typing import Any


def report_and_exit(error: BaseException) -> None:
    """Print ``error`` as Hydra prints a failed job's error (the traceback trimmed to the
    user's frames, or whole with ``HYDRA_FULL_ERROR=1``) and exit with status 1.

    Reaches: ``hydra._internal.utils.run_and_report``. Why: Hydra's trimmed traceback is only
    printed by its own app runner, which m3l's app leaves to word its own errors. Checked on
    hydra-core 1.3.8.
    """
    from hydra._internal.utils import run_and_report

    def reraise() -> None:
        raise error

    run_and_report(reraise)


def job_return_value(ret: Any) -> Any:
    """What a finished Hydra job (a ``JobReturn``) returned, or the exception it raised when
    it failed, without raising it.

    Reaches: ``JobReturn._return_value``. Why: for a failed job the public ``return_value``
    raises that exception and first writes "Error executing job with overrides: ..." to
    stderr, where a sweep only wants the reason a trial failed. Checked on hydra-core 1.3.8.
    """
    return ret._return_value


def override_value_text(override: Any, value: Any) -> str:
    """``value`` (one element of a sweep override, e.g. a dict or list inside
    ``choice(...)``) written as Hydra override text, as Hydra writes it for a job.

    Reaches: ``Override._get_value_element_as_str``. Why: the public
    ``Override.get_value_element_as_str()`` writes the override's whole value, not one element
    of a sweep. Checked on hydra-core 1.3.8.
    """
    return override._get_value_element_as_str(value)
