"""m3l: MultiMedia and Machine Learning.

Restoration (denoising, deblurring, artifact removal) and multi-task learning on
PyTorch, Lightning and Hydra.
"""

__version__ = "0.1.0"
