"""m3l's Hydra sweeper on Optuna's ask/tell API (see docs/clusters-and-sweeps.md)."""
