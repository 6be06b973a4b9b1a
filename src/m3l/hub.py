"""Pretrained weights: a registry of safetensors files with sha256 checks, and torch.hub entries.

Each entry builds a :class:`m3l.models.restoration.RestorationModule` (the net plus its
residual connection and ``restore()`` for any image size)::

    model = torch.hub.load("path/or/owner/m3l", "dncnn_color_blind", pretrained=True)
    clean = model.restore(noisy)          # (B, 3, H, W) on [0, 1]

Where the weights come from, first match wins:

1. ``weights=PATH_OR_URL`` passed to the entry (a local file, ``file://`` or ``http(s)://``);
2. ``$M3L_WEIGHTS_URL``, a template such as ``https://example.org/m3l/v0.1/{filename}``
   (point it at a release to fetch instead of using the packaged files);
3. the file packaged in ``m3l/hub_weights/``.

Downloads go to ``$M3L_CACHE_DIR`` (default ``<torch.hub dir>/m3l``) and are checked
against the registry's sha256 before they are kept; a cached file is checked again when
loaded. Every file has a model card beside it (``NAME.md``): data, steps, hardware, PSNR.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m3l.errors import M3LError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "hub_weights"
URL_ENV = "M3L_WEIGHTS_URL"
CACHE_ENV = "M3L_CACHE_DIR"


class HubError(M3LError):
    """Weights that cannot be found, fetched or trusted."""


@dataclass(frozen=True)
class WeightEntry:
    """One pretrained file: the net it fits, its file name and sha256, its card."""

    name: str
    build: Callable[[], Any]
    residual: bool
    filename: str | None = None
    sha256: str | None = None
    summary: str = ""

    @property
    def card(self) -> Path | None:
        return WEIGHTS_DIR / f"{self.name}.md" if self.filename else None


# ---------------------------------------------------------------------------- nets


def _dncnn_small() -> Any:
    from m3l.models.nets import DnCNN

    return DnCNN(in_channels=3, depth=8, features=32)


def _arcnn() -> Any:
    from m3l.models.nets import ARCNN

    return ARCNN(in_channels=3)


def _nafnet_small() -> Any:
    from m3l.models.nets import NAFNet

    return NAFNet(in_channels=3, width=16, enc_blocks=[1, 1, 2], middle_blocks=2, dec_blocks=[1, 1, 1])


def _plain(name: str, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        from m3l.models import nets

        return getattr(nets, name)(**kwargs)

    return build


REGISTRY: dict[str, WeightEntry] = {
    entry.name: entry
    for entry in (
        WeightEntry("dncnn_color_blind", _dncnn_small, True, "dncnn_color_blind.safetensors",
                    "32446cdc744b135d73f3cad58f6885fee723f1a7b5ce8ee3dc74ac8b8a50534b",
                    "DnCNN-small, blind Gaussian denoising of RGB photos (sigma 0-55)"),
        WeightEntry("arcnn_color_jpeg", _arcnn, True, "arcnn_color_jpeg.safetensors",
                    "83eb245d7837d67fac56c4833e6ff3d8965ddecd28c577d36c45778513637dfc",
                    "AR-CNN (residual), JPEG artifact removal of RGB photos (quality 10-40)"),
        WeightEntry("nafnet_small_color_deblur", _nafnet_small, True, "nafnet_small_color_deblur.safetensors",
                    "7f3828bec7f50154413f2ea822f6ccac9a1db716039d192f7cd3ec0eb4089776",
                    "NAFNet-small, deblurring of RGB photos (Gaussian and motion blur)"),
        # architectures without shipped weights: pretrained=False, or weights=YOUR_FILE
        WeightEntry("dncnn", _plain("DnCNN", in_channels=3), True),
        WeightEntry("ffdnet", _plain("FFDNet", in_channels=3), False),
        WeightEntry("unet", _plain("UNet", in_channels=3), True),
        WeightEntry("nafnet", _plain("NAFNet", in_channels=3), True),
        WeightEntry("arcnn", _plain("ARCNN", in_channels=3), False),
        WeightEntry("fastdvdnet", _plain("FastDVDnet", in_channels=3), False),
    )
}


# ---------------------------------------------------------------------------- files


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``$M3L_CACHE_DIR`` or ``<torch.hub dir>/m3l``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import torch.hub

    return Path(torch.hub.get_dir()) / "m3l"


def _check(path: Path, expected: str | None, source: str) -> Path:
    if expected is not None:
        found = sha256_of(path)
        if found != expected:
            raise HubError(
                f"{source}: sha256 mismatch (expected {expected}, got {found}); the file is corrupted or not "
                "the published one, and was not used. Delete it / retry the download, or check the URL."
            )
    return path


def download(url: str, sha256: str | None, filename: str | None = None, timeout: float = 60) -> Path:
    """Fetch ``url`` into the cache (atomically), unless a verified copy is already there."""
    name = filename or Path(urllib.parse.urlparse(url).path).name or "weights.safetensors"
    target = cache_dir() / name
    if target.is_file():
        try:
            return _check(target, sha256, str(target))
        except HubError:
            log.warning("cached %s does not match its sha256; downloading it again", target)
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310
            shutil.copyfileobj(answer, out)
        _check(tmp, sha256, f"download of {url}")
        os.replace(tmp, target)
        log.info("downloaded %s to %s", url, target)
    except (urllib.error.URLError, OSError) as exc:
        raise HubError(f"could not download {url}: {exc}. Check the URL, or pass weights=LOCAL_FILE.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def weights_path(name: str, weights: str | os.PathLike[str] | None = None) -> Path:
    """A verified local file of entry ``name`` (see the module docstring for the order)."""
    entry = entry_of(name)
    if weights is not None:
        text = str(weights)
        scheme = urllib.parse.urlparse(text).scheme
        if scheme in ("http", "https", "file"):
            return download(text, entry.sha256, entry.filename)
        path = Path(text).expanduser()
        if not path.is_file():
            raise HubError(f"weights={text}: no such file (pass a .safetensors path or an http(s) URL).")
        return path  # the user's own file: no registry hash to hold it to
    if entry.filename is None:
        raise HubError(
            f"m3l ships no pretrained weights for {name!r}; use pretrained=False or weights=YOUR_FILE. "
            f"Entries with weights: {', '.join(n for n, e in REGISTRY.items() if e.filename)}."
        )
    template = os.environ.get(URL_ENV)
    if template:
        return download(template.format(filename=entry.filename, name=name), entry.sha256, entry.filename)
    packaged = WEIGHTS_DIR / entry.filename
    if not packaged.is_file():
        raise HubError(f"{packaged} is missing from this install; set {URL_ENV} to a release URL template.")
    return _check(packaged, entry.sha256, str(packaged))


def entry_of(name: str) -> WeightEntry:
    if name not in REGISTRY:
        raise HubError(f"no hub entry {name!r}; available: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def load(name: str, pretrained: bool = True, weights: str | os.PathLike[str] | None = None) -> Any:
    """The RestorationModule of entry ``name``, with its weights when ``pretrained`` or ``weights``."""
    from safetensors.torch import load_file

    from m3l.models.restoration import RestorationModule

    entry = entry_of(name)
    module = RestorationModule(entry.build(), residual=entry.residual)
    if pretrained or weights is not None:
        path = weights_path(name, weights)
        state = load_file(str(path))
        state = {k if k.startswith("net.") else f"net.{k}": v for k, v in state.items()}
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise HubError(f"{path} does not fit the net of {name!r}: {str(exc).splitlines()[0]}") from exc
    return module.eval()


def _entry(name: str) -> Callable[..., Any]:
    def hub_entry(pretrained: bool = True, weights: str | os.PathLike[str] | None = None) -> Any:
        return load(name, pretrained=pretrained, weights=weights)

    entry = REGISTRY[name]
    hub_entry.__name__ = name
    card = f" Model card: m3l/hub_weights/{name}.md." if entry.filename else " (no shipped weights)"
    hub_entry.__doc__ = f"{entry.summary or name}.{card} Returns a RestorationModule (`.restore(x)`)."
    return hub_entry


dncnn_color_blind = _entry("dncnn_color_blind")
arcnn_color_jpeg = _entry("arcnn_color_jpeg")
nafnet_small_color_deblur = _entry("nafnet_small_color_deblur")
dncnn = _entry("dncnn")
ffdnet = _entry("ffdnet")
unet = _entry("unet")
nafnet = _entry("nafnet")
arcnn = _entry("arcnn")
fastdvdnet = _entry("fastdvdnet")

ENTRY_POINTS = tuple(REGISTRY)
