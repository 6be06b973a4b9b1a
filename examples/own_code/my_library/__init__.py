"""A user's own restoration code: a plain LightningModule and LightningDataModule.

Nothing here imports m3l. See docs/own-model.md for the walkthrough.
"""
