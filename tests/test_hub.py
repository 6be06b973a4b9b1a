"""m3l.hub and hubconf.py: packaged weights, downloads over a real 127.0.0.1 HTTP server,
sha256 checks, the cache, and torch.hub.load on the repository."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from m3l import hub
from m3l.hub import HubError

REPO = Path(__file__).resolve().parents[1]
NAME = "dncnn_color_blind"
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
    assert {e.name for e in shipped} >= {"dncnn_color_blind", "arcnn_color_jpeg", "nafnet_small_color_deblur"}
    for entry in shipped:
        path = hub.WEIGHTS_DIR / entry.filename
        assert hub.sha256_of(path) == entry.sha256 and path.stat().st_size < 2_000_000
        card = entry.card.read_text()
        assert "short CPU training" in card and "PSNR" in card and "held-out" in card


def test_pretrained_model_denoises_a_real_photo() -> None:
    from m3l.data.samples import sample_paths
    from m3l.models import metrics as M
    import numpy as np
    from PIL import Image

    model = hub.load(NAME, pretrained=True)
    clean = torch.from_numpy(np.asarray(Image.open(sample_paths("val")[0]).convert("RGB"), dtype=np.float32) / 255)
    clean = clean.permute(2, 0, 1)[None, :, :96, :128]
    noisy = (clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 25 / 255).clamp(0, 1)
    with torch.no_grad():
        out = model.restore(noisy).clamp(0, 1)
    assert M.psnr(out, clean) > M.psnr(noisy, clean) + 0.5


def test_download_checks_sha_and_caches(release: tuple[_Server, Path], isolated_cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = release
    monkeypatch.setenv(hub.URL_ENV, server.url + "/{filename}")
    first = hub.load(NAME)
    assert server.requests == [f"/{FILENAME}"] and (isolated_cache / FILENAME).is_file()
    second = hub.load(NAME)  # from the cache: no new request
    assert server.requests == [f"/{FILENAME}"]
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    direct = hub.load(NAME, weights=f"{server.url}/{FILENAME}")
    assert torch.equal(next(iter(direct.state_dict().values())), next(iter(first.state_dict().values())))


def test_corrupted_download_is_rejected_and_not_cached(release: tuple[_Server, Path], isolated_cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server, root = release
    data = bytearray((root / FILENAME).read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the tensor data
    (root / FILENAME).write_bytes(bytes(data))
    monkeypatch.setenv(hub.URL_ENV, server.url + "/{filename}")
    with pytest.raises(HubError, match="sha256 mismatch.*corrupted"):
        hub.load(NAME)
    assert not (isolated_cache / FILENAME).exists() and not list(isolated_cache.glob(".*"))
    with pytest.raises(HubError, match="could not download .*404|could not download .*Not Found"):
        hub.load(NAME, weights=f"{server.url}/missing.safetensors")


def test_corrupted_cache_is_fetched_again(release: tuple[_Server, Path], isolated_cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = release
    isolated_cache.mkdir()
    (isolated_cache / FILENAME).write_bytes(b"truncated")
    monkeypatch.setenv(hub.URL_ENV, server.url + "/{filename}")
    hub.load(NAME)
    assert server.requests == [f"/{FILENAME}"]
    assert hub.sha256_of(isolated_cache / FILENAME) == hub.REGISTRY[NAME].sha256


def test_local_path_and_clear_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    own = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in hub.load("dncnn", pretrained=False).state_dict().items()}, str(own))
    assert hub.load("dncnn", weights=own) is not None
    with pytest.raises(HubError, match="ships no pretrained weights for 'unet'"):
        hub.load("unet", pretrained=True)
    with pytest.raises(HubError, match="does not fit the net of 'dncnn_color_blind'"):
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
    model = torch.hub.load(str(REPO), "arcnn_color_jpeg", source="local", pretrained=True)
    assert model.restore(torch.rand(1, 3, 20, 24)).shape == (1, 3, 20, 24)
