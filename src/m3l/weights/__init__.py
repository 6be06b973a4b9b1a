"""Weights: checkpoint files (``checkpoints``: loading, ``checkpoint=`` resolution, exact
resume) and pretrained weights (``hub``: the registry, the files m3l ships in ``shipped/``
with their cards, the torch.hub entry points)."""
