"""Ready-made pieces of the packaged multi-task examples (MultiMNIST, all-in-one restoration)."""
