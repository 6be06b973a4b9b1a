"""The orchestrator: :class:`~m3l.engine.experiment.Experiment` and what only it uses.

A verb of the command line, a notebook and ``mtl.Trainer`` all go through ``Experiment``:
it builds the data, net, Lightning Trainer, callbacks and loggers from a config (or takes them
built in Python) and runs ``fit``, ``test`` or ``correct``. Beside it: the arguments of one
call (``call_options``), the config's missing values (``config_checks``), a ``_target_`` built
with messages (``instantiation``), which weights a verb uses (``weights_choice``), Lightning's
messages reworded (``lightning_messages``) and the table a verb ends with (``metrics_report``).
"""
