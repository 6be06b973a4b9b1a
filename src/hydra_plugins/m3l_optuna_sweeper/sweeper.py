"""What Hydra's plugin scanner imports: the sweeper's configs always, the sweeper itself
(``_sweeper``, skipped by the scanner for its leading underscore) only when Optuna is
installed, so a base install (without ``m3l[sweep]``) starts without an import warning."""

import importlib.util

from hydra_plugins.m3l_optuna_sweeper.config import register

register()

if importlib.util.find_spec("optuna") is not None:
    from hydra_plugins.m3l_optuna_sweeper._sweeper import OptunaSweeper, SweepError  # noqa: F401
