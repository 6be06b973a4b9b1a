"""The one place where m3l reaches the private parts of the libraries it runs on.

Every use of a name that starts with ``_`` on a Lightning, torch, Hydra or MLflow object or
module is one named function (or class) here, one module per library:
:mod:`m3l._compat.lightning`, :mod:`m3l._compat.torch`, :mod:`m3l._compat.hydra`,
:mod:`m3l._compat.mlflow`. Each docstring says what it reaches, why no public API does it,
and the releases it was checked on; each has a canary test in ``tests/_compat/`` that fails
with "<Library> X.Y changed <thing>: update m3l._compat.<module>.<function>" when a release
changes what it relies on. Ruff's private-member rule (``SLF001``, in ``pyproject.toml``)
refuses such an access anywhere else in ``src/``.

The modules import their library lazily (inside the functions), so importing one costs
nothing and an optional library (MLflow) is only needed by the function that uses it.
"""
