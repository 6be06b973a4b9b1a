"""The ``trainer`` config: what of it reaches Lightning's ``Trainer`` (``args``), the
Trainer's arguments read from the installed Lightning (``signature``), values checked against
their annotations (``types``), Lightning 1.x keys and hooks with their 2.x forms
(``lightning1``) and ``pytorch_lightning`` 2.x names mapped onto ``lightning.pytorch``
(``pytorch_lightning_alias``)."""
