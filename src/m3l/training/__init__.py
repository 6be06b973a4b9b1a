"""What the restoration and the multi-task LightningModules share while they train: the
optimizer and scheduler factories of configs (``optim``) and epoch means exact across DDP
ranks (``distributed``)."""
