"""m3l: MultiMedia and Machine Learning.

Restoration (denoising, deblurring, artifact removal) and multi-task learning on
PyTorch, Lightning and Hydra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from m3l import _moved

_moved.install()  # the module paths of m3l 0.1 that moved into folders (m3l/_moved.py)

__version__ = "0.1.0"
__all__ = ["Experiment", "compose", "__version__"]

if TYPE_CHECKING:
    from m3l.config import compose
    from m3l.engine.experiment import Experiment


def __getattr__(name: str) -> Any:
    # lazy: `import m3l` stays cheap; Lightning is imported when an Experiment is needed
    if name == "Experiment":
        from m3l.engine.experiment import Experiment

        return Experiment
    if name == "compose":
        from m3l.config import compose

        return compose
    raise AttributeError(name)
