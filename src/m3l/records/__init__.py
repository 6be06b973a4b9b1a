"""What a run records, and what earlier runs recorded: the run's directory, ``config.yaml``
and log (``lifecycle``: the ``Run``), the loggers (``tracking``: MLflow, W&B, TensorBoard) and
earlier runs, read only (``past_runs``: what ``resume=true``, ``checkpoint=best|last`` and
``run_id=`` mean)."""
