"""Noise-level estimation for non-blind nets (FFDNet and any net conditioned on ``sigma``).

The estimator is Donoho & Johnstone's robust median of the finest diagonal wavelet
coefficients: ``sigma = median(|HH|) / 0.6745`` with the Daubechies-2 wavelet, averaged over
the color channels, exactly what ``skimage.restoration.estimate_sigma(image,
channel_axis=-1, average_sigmas=True)`` computes (the tests hold the two together on real
photos). It is written on tensors so that it runs batched, on the device of the images,
inside ``predict_step``, with no NumPy round trip and no scikit-image in the core install.

D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage",
Biometrika 81(3), 1994. https://doi.org/10.1093/biomet/81.3.425

It reads the noise of the flattest regions well; on heavily textured photos with little
noise it overestimates (texture leaks into the HH band), so pass a fixed level
(``net.predict_conditions.sigma=...``) when you know it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from m3l.errors import ShapeError

# the Daubechies-2 decomposition high-pass filter (pywt.Wavelet("db2").dec_hi)
_DB2_HIGH = (-0.48296291314469025, 0.836516303737469, -0.22414386804185735, -0.12940952255092145)
_GAUSS_Q75 = 0.6744897501960817  # scipy.stats.norm.ppf(0.75)


def estimate_noise_sigma(x: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian noise level of ``(B, C, H, W)`` images on [0, 1]; returns ``(B,)``."""
    if x.dim() != 4:
        raise ShapeError(f"estimate_noise_sigma expects (B, C, H, W) images, got {tuple(x.shape)}.")
    b, c, h, w = x.shape
    if h < 8 or w < 8:
        raise ShapeError(
            f"estimate_noise_sigma needs images of at least 8x8 pixels, got {h}x{w}; give sigma explicitly for tiny images."
        )
    g = torch.tensor(_DB2_HIGH, dtype=torch.float64, device=x.device).flip(0)  # correlation = convolution
    kernel = (g[:, None] * g[None, :]).view(1, 1, 4, 4)
    planes = x.detach().to(torch.float64).reshape(b * c, 1, h, w)
    hh = F.conv2d(planes, kernel, stride=2).reshape(b, c, -1).abs()
    sigmas = torch.empty(b, c, dtype=torch.float64, device=x.device)
    for i in range(b):
        for j in range(c):
            values = hh[i, j]
            values = values[values != 0]  # exactly flat regions carry no information
            sigmas[i, j] = values.median() / _GAUSS_Q75 if values.numel() else 0.0
    return sigmas.mean(dim=1).to(x.dtype)
