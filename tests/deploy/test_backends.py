"""Inference backends: the pick reproduces eager PyTorch on the first input (real photos),
the ONNX export is cached by weights, failures fall back to eager with one line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.samples import sample_paths
from m3l.deploy import backends as B
from m3l.deploy.backends import InferenceBackend
from m3l.errors import ConfigError
from m3l.models.nets import DnCNN
from m3l.models.restoration import RestorationModule

pytest.importorskip("onnxruntime", reason="the export extra is not installed")
pytest.importorskip("onnxscript", reason="the export extra is not installed")


def photo(size: tuple[int, int] = (96, 72), sigma: float = 25 / 255) -> torch.Tensor:
    """A packaged sample photo (real), resized, with seeded Gaussian noise: (1, 3, H, W)."""
    image = Image.open(sample_paths("val")[0]).convert("RGB").resize(size)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1).contiguous()


def dncnn() -> RestorationModule:
    torch.manual_seed(0)
    return RestorationModule(DnCNN(in_channels=3, depth=5, features=16), residual=True).eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for the tests of this file: :func:`dncnn` is exported once."""
    return tmp_path_factory.mktemp("onnx_cache")


def restore(module: RestorationModule, x: torch.Tensor, backend: InferenceBackend | None) -> torch.Tensor:
    module.inference_forward = backend
    with torch.inference_mode():
        return module.restore(x)


@pytest.mark.parametrize(
    "backend", [pytest.param("auto", marks=pytest.mark.slow), pytest.param("onnx", marks=pytest.mark.slow), "eager"]
)
def test_the_pick_reproduces_eager_pytorch(cache: Path, backend: str) -> None:
    module, x = dncnn(), photo()
    expected = restore(module, x, None)
    chosen = InferenceBackend(module, backend, "fp32", cache_dir=cache, name="dncnn")
    got = restore(module, x, chosen)
    assert (got - expected).abs().max() <= B.PARITY_TOLERANCE
    assert chosen.chosen is not None and chosen.summary.startswith(f"backend={backend} precision=fp32: ")
    if backend != "auto":
        assert chosen.chosen.backend == backend
    assert "of fp32's (largest difference" in chosen.summary or chosen.chosen.label == "eager/fp32 as is"


def test_onnx_export_is_cached_by_weights(cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    module, x = dncnn(), photo()
    restore(module, x, InferenceBackend(module, "onnx", "fp32", cache_dir=cache, name="dncnn"))
    (artifact,) = cache.glob("dncnn-*.onnx")
    first = artifact.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="m3l.deploy.backends"):
        again = InferenceBackend(module, "onnx", "fp32", cache_dir=cache, name="dncnn")
        restore(module, x, again)
    assert again.chosen.backend == "onnx" and artifact.stat().st_mtime_ns == first
    assert not any("exported dncnn to ONNX" in r.getMessage() for r in caplog.records)
    # the key: the weights, the net's structure and config, the input channels
    key = B.weights_key(module.net, "net: a", "channels=3")
    assert key == B.weights_key(dncnn().net, "net: a", "channels=3")
    assert key != B.weights_key(module.net, "net: b", "channels=3") != B.weights_key(module.net, "net: a", "channels=1")
    changed = dncnn()
    with torch.no_grad():
        changed.net.body[0].weight.add_(0.01)
    assert key != B.weights_key(changed.net, "net: a", "channels=3")


@pytest.mark.slow
def test_a_stale_cached_export_is_made_again(cache: Path, tmp_path: Path) -> None:
    module, other, x = dncnn(), dncnn(), photo()
    with torch.no_grad():
        other.net.body[0].weight.mul_(-1)
    (cached,) = cache.glob("dncnn-*.onnx")
    B.onnx_artifact(other, [tmp_path / "stale.onnx"], "stale")  # a wrong graph put where this key's export lives
    (tmp_path / "stale.onnx").replace(tmp_path / cached.name)
    again = InferenceBackend(module, "onnx", "fp32", cache_dir=tmp_path, name="dncnn")
    got = restore(module, x, again)
    assert again.chosen.backend == "onnx" and (got - restore(module, x, None)).abs().max() <= B.PARITY_TOLERANCE


@pytest.mark.slow
def test_a_backend_that_does_not_reproduce_eager_falls_back(cache: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(B, "PARITY_TOLERANCE", 0.0)  # ONNX Runtime differs by ~1e-7: not exact
    module, x = dncnn(), photo()
    chosen = InferenceBackend(module, "onnx", "fp32", cache_dir=cache, name="dncnn")
    with caplog.at_level(logging.WARNING, logger="m3l.deploy.backends"):
        got = restore(module, x, chosen)
    assert chosen.chosen.label == "eager/fp32 as is"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "backend=onnx" in lines[0] and "eager PyTorch" in lines[0] and "max |diff|" in lines[0]
    assert torch.equal(got, restore(module, x, None))


def test_a_module_m3l_cannot_export_runs_eager_with_the_reason(caplog) -> None:
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x * 0.5

    chosen = InferenceBackend(Plain(), "auto")
    with caplog.at_level(logging.INFO, logger="m3l.deploy.backends"):
        out = chosen(torch.ones(1, 3, 8, 8))
    assert torch.equal(out, torch.full((1, 3, 8, 8), 0.5))
    assert "eager PyTorch fp32 runs the net (Plain is not a restoration module" in chosen.summary


def zoo_ffdnet(runs: Path, size: tuple[int, int]) -> tuple[RestorationModule, torch.Tensor, torch.Tensor]:
    """m3l's trained blind FFDNet (the zoo's weights), a noisy photo of ``size`` and its eager output."""
    from m3l import Experiment, compose

    experiment = Experiment(compose("ffdnet_color_blind", [f"paths.runs_dir={runs}"]))
    experiment.load_weights("pretrained")
    module, x = experiment.net.eval(), photo(size)
    with torch.inference_mode():
        return module, x, module(x)


@pytest.mark.slow
def test_bf16_is_kept_only_when_the_output_holds(tmp_path: Path, caplog) -> None:
    """m3l's trained blind FFDNet (the zoo's weights) loses more than the bf16 threshold
    allows: auto keeps fp32, precision=bf16 forces it with a warning; precision=fp32 never
    tries it."""
    module, x, reference = zoo_ffdnet(tmp_path, (64, 64))

    auto = InferenceBackend(module, "eager", "auto", cache_dir=tmp_path)
    auto(x)
    if not B.cpu_has_bf16():
        assert [c.label for c in auto.candidates] == ["eager/fp32"]
        pytest.skip("this CPU has no bf16 units")
    bf16 = next(c for c in auto.candidates if c.precision == "bf16")
    assert "PSNR" in bf16.check and auto.chosen.precision == "fp32"
    assert bf16.failed.endswith(f"below {B.BF16_MIN_PSNR:.0f} dB")

    with caplog.at_level(logging.WARNING, logger="m3l.deploy.backends"):
        forced = InferenceBackend(module, "eager", "bf16", cache_dir=tmp_path)
        out = forced(x)
    assert forced.chosen.precision == "bf16" and any("used as forced" in r.getMessage() for r in caplog.records)
    assert 35 < B.psnr_db(out.clamp(0, 1), reference.clamp(0, 1)) < B.BF16_MIN_PSNR

    fp32 = InferenceBackend(module, "eager", "fp32", cache_dir=tmp_path)
    fp32(x)
    assert [c.precision for c in fp32.candidates] == ["fp32"]


@pytest.mark.slow
def test_int8_is_kept_only_when_the_output_holds(tmp_path: Path, caplog) -> None:
    """int8 through ONNX Runtime, calibrated on the first input: faster, but m3l's trained
    blind FFDNet loses more than the threshold allows, so auto keeps fp32 and says why;
    precision=int8 forces it with a warning. Nothing but the fp32 export is written."""
    module, x, reference = zoo_ffdnet(tmp_path / "runs", (128, 96))
    cache = tmp_path / "cache"

    auto = InferenceBackend(module, "onnx", "auto", cache_dir=cache, name="ffdnet")
    with caplog.at_level(logging.INFO, logger="m3l.deploy.backends"):
        auto(x)
    assert exports_made(caplog) == 1  # int8 failing its check is no reason to export the fp32 net again
    if not B.cpu_has_int8():
        assert [c.label for c in auto.candidates] == ["onnx/fp32"]
        pytest.skip("this CPU has no int8 units")
    int8 = next(c for c in auto.candidates if c.precision == "int8")
    assert not int8.failed.startswith(("ModuleNotFound", "ImportError")), int8.failed
    assert "PSNR" in int8.check and int8.failed.endswith(f"below {B.BF16_MIN_PSNR:.0f} dB")
    assert auto.chosen.label == "onnx/fp32" and "ONNX Runtime int8 refused: PSNR" in auto.summary

    with caplog.at_level(logging.WARNING, logger="m3l.deploy.backends"):
        forced = InferenceBackend(module, "auto", "int8", cache_dir=cache, name="ffdnet")
        out = forced(x)
    assert forced.chosen.label == "onnx/int8" and any(
        "precision=int8" in r.getMessage() and "used as forced" in r.getMessage() for r in caplog.records
    )
    assert 30 < B.psnr_db(out.clamp(0, 1), reference.clamp(0, 1)) < B.BF16_MIN_PSNR
    assert exports_made(caplog) == 1
    (export,) = cache.glob("*.onnx")  # the fp32 export (and its .json sidecar) only
    assert sorted(p.name for p in cache.iterdir()) == sorted([export.name, f"{export.name}.json"])


def test_int8_is_not_tried_without_the_units_nor_on_pytorch(monkeypatch) -> None:
    monkeypatch.setattr(B, "cpu_has_int8", lambda: False)
    plan, note = InferenceBackend(dncnn(), "auto", "auto")._plan(photo())
    assert all(c.precision != "int8" for c in plan) and "no int8 units on this CPU" in note
    with pytest.raises(
        ConfigError, match="precision=int8 runs on ONNX Runtime: use backend=onnx or auto with it, not backend=eager"
    ):
        InferenceBackend(dncnn(), "eager", "int8")


def test_unknown_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="backend='fast' is not a backend; use one of: auto, eager, compile, onnx"):
        InferenceBackend(dncnn(), "fast")
    with pytest.raises(ConfigError, match="precision='fp16'"):
        InferenceBackend(dncnn(), "auto", "fp16")
    with pytest.raises(ConfigError, match="precision=bf16 runs on PyTorch"):
        InferenceBackend(dncnn(), "onnx", "bf16")


@pytest.mark.slow
def test_auto_skips_a_first_export_for_a_small_job(tmp_path: Path) -> None:
    module, x = dncnn(), photo()
    chosen = InferenceBackend(module, "auto", "fp32", cache_dir=tmp_path, name="dncnn", expected_calls=1)
    restore(module, x, chosen)
    assert "ONNX Runtime, not worth an export for a job of about" in chosen.summary and not list(
        tmp_path.glob("*.onnx")
    )

    # with the export cached, a short job still skips int8 (quantized again at every run)
    restore(module, x, InferenceBackend(module, "onnx", "fp32", cache_dir=tmp_path, name="dncnn"))
    short = InferenceBackend(module, "auto", "auto", cache_dir=tmp_path, name="dncnn", expected_calls=1)
    restore(module, x, short)
    if B.cpu_has_int8():
        assert "int8, not worth quantizing for a job of about" in short.summary
        assert all(c.precision != "int8" for c in short.candidates)
    long = InferenceBackend(module, "auto", "auto", cache_dir=tmp_path, name="dncnn", expected_calls=10**6)
    restore(module, x, long)
    assert any(c.precision == "int8" for c in long.candidates) == B.cpu_has_int8()


def save_checkpoint(module: RestorationModule, path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in module.net.state_dict().items()}, str(path))
    return path


def exports_made(caplog: pytest.LogCaptureFixture) -> int:
    return sum("to ONNX in" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_the_onnx_export_is_kept_beside_the_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from m3l.weights.checkpoints import load_weights_into

    user_cache, x = tmp_path / "cache", photo()
    checkpoint = save_checkpoint(dncnn(), tmp_path / "run" / "best.safetensors")
    (tmp_path / "run" / "notes.onnx").write_bytes(b"the user's own file")

    def run(config: str = "net: a") -> InferenceBackend:
        module = RestorationModule(DnCNN(in_channels=3, depth=5, features=16), residual=True).eval()
        load_weights_into(module, checkpoint)  # records module.weights_file
        backend = InferenceBackend(module, "onnx", "fp32", cache_dir=user_cache, name="dncnn", config_text=config)
        restore(module, x, backend)
        assert backend.chosen.backend == "onnx"
        return backend

    with caplog.at_level(logging.INFO, logger="m3l.deploy.backends"):
        first = run()
        (artifact,) = checkpoint.parent.glob("best.safetensors.*.onnx")
        assert first._onnx_path == artifact and not user_cache.exists() and exports_made(caplog) == 1
        stamp = artifact.stat().st_mtime_ns
        run()  # a second run reuses it: no export
        assert exports_made(caplog) == 1 and artifact.stat().st_mtime_ns == stamp
        run("net: b")  # another config of the net: another export beside it
        assert exports_made(caplog) == 2 and len(list(checkpoint.parent.glob("best.safetensors.*.onnx"))) == 2
        changed = dncnn()
        with torch.no_grad():
            changed.net.body[0].weight.add_(0.01)
        (tmp_path / "run" / "best.safetensors.final.onnx").write_bytes(b"the user's deployed export")
        save_checkpoint(changed, checkpoint)  # new weights in the same file: not the old export
        run()
        # the two exports of its earlier weights are deleted, with their sidecars; not the user's
        (newest,) = checkpoint.parent.glob("best.safetensors.*[0-9a-f].onnx")
        assert (
            exports_made(caplog) == 3 and "removed 2 stale ONNX export(s) of an earlier best.safetensors" in caplog.text
        )
        assert sorted(p.name for p in checkpoint.parent.iterdir()) == sorted(
            ["best.safetensors", newest.name, f"{newest.name}.json", "notes.onnx", "best.safetensors.final.onnx"]
        )
    assert (tmp_path / "run" / "notes.onnx").read_bytes() == b"the user's own file"
    assert (tmp_path / "run" / "best.safetensors.final.onnx").read_bytes() == b"the user's deployed export"


@pytest.mark.slow
def test_a_checkpoint_in_a_folder_nobody_can_write_exports_to_the_user_cache(tmp_path: Path) -> None:
    module, x = dncnn(), photo()
    # /proc takes no new files, not even from root: a read-only checkpoint folder anywhere
    backend = InferenceBackend(
        module, "onnx", "fp32", cache_dir=tmp_path, name="dncnn", checkpoint="/proc/weights.ckpt"
    )
    restore(module, x, backend)
    assert backend.chosen.backend == "onnx" and backend._onnx_path.parent == tmp_path
    assert [p.name for p in B.onnx_cache_places("dncnn", "ab" * 32, tmp_path, Path("/proc/weights.ckpt"))] == [
        f"weights.ckpt.{'ab' * 8}.onnx",
        f"dncnn-{'ab' * 10}.onnx",
    ]


# ------------------------------------------------------------ representative inputs, periodic checks


def noisy_photos(count: int, side: int = 256, sigma: float = 25 / 255) -> list[torch.Tensor]:
    """``count`` real photos (m3l's samples and scikit-image's), ``side`` px square, each with
    its own seeded Gaussian noise: (1, 3, side, side) on [0, 1]."""
    from skimage import data

    sources = [Image.open(p).convert("RGB") for p in sample_paths("val")]
    sources += [Image.fromarray(getattr(data, name)()) for name in ("astronaut", "coffee", "chelsea")]
    photos = []
    for i in range(count):
        image = np.asarray(sources[i % len(sources)].resize((side, side)), dtype=np.float32) / 255
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
        photos.append((x + sigma * noise).clamp(0, 1).contiguous())
    return photos


def odd_inputs(photo: torch.Tensor) -> list[torch.Tensor]:
    """What a folder of files may also hold, as the loader hands them on: a 1x1 and a 3x5
    thumbnail, a gray photo (gray+alpha, its alpha dropped), a 16-bit one."""
    gray = photo.mean(1, keepdim=True).expand_as(photo).contiguous()
    sixteen = (photo * 65535).round() / 65535
    return [photo[..., :1, :1].contiguous(), photo[..., :3, :5].contiguous(), gray, sixteen]


def assert_within_the_rule(outputs: list[torch.Tensor], references: list[torch.Tensor]) -> None:
    """Every output equal to the eager fp32 one or at least BF16_MIN_PSNR dB from it."""
    values = [B.psnr_db(o, r) for o, r in zip(outputs, references)]
    bad = [(i, round(v, 1)) for i, v in enumerate(values) if v < B.BF16_MIN_PSNR]
    assert not bad, f"outputs (index, dB vs eager fp32) below {B.BF16_MIN_PSNR:.0f} dB: {bad}"


@pytest.fixture
def int8_fastest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timings of a CPU where int8 is the fastest, then bf16, then fp32 ONNX Runtime (as on the
    machine of the issue): which candidate is kept then rests on its checks alone."""
    seconds = {"onnx/int8": 1e-6, "eager/bf16": 2e-6, "onnx/fp32": 3e-6, "eager/fp32": 4e-6}
    labels: dict[int, str] = {}
    build, timed = InferenceBackend._build, InferenceBackend._timed

    def labelled(self: InferenceBackend, candidate: B.Candidate, rebuild: bool = False) -> B.Forward:
        forward = build(self, candidate, rebuild)
        labels[id(forward)] = candidate.label
        return forward

    def fake(forward: B.Forward, x: torch.Tensor, conditions: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
        out, spent = timed(forward, x, conditions)
        return out, seconds.get(labels.get(id(forward), ""), spent)

    monkeypatch.setattr(InferenceBackend, "_build", labelled)
    monkeypatch.setattr(InferenceBackend, "_timed", staticmethod(fake))


@pytest.fixture(scope="module")
def hub_ffdnet() -> RestorationModule:
    from m3l.weights import hub

    return hub.load("ffdnet_color_blind")


@pytest.mark.slow
def test_thumbnails_first_do_not_decide_the_backend(
    hub_ffdnet: RestorationModule, tmp_path: Path, int8_fastest: None
) -> None:
    """A folder whose first files are thumbnails (1x1, 3x5), then noisy photos, with the
    defaults: nothing is picked nor calibrated on the thumbnails; every output holds."""
    photos = noisy_photos(12)
    inputs = odd_inputs(photos[0])[:2] + photos[:6] + odd_inputs(photos[1]) + photos[6:]
    references = [restore(hub_ffdnet, x, None) for x in inputs]
    backend = InferenceBackend(hub_ffdnet, "auto", "auto", cache_dir=tmp_path, name="ffdnet")
    outputs = [restore(hub_ffdnet, x, backend) for x in inputs]
    assert_within_the_rule(outputs, references)
    assert torch.equal(outputs[0], references[0]) and torch.equal(outputs[1], references[1])  # the reference ran them
    if backend.chosen.backend == "onnx" and backend.chosen.precision == "int8":  # calibrated on a photo, not a pixel
        assert backend._calibration[0].shape[-2:] == (B.PROBE_SIDE, B.PROBE_SIDE)


@pytest.mark.slow
def test_a_black_first_frame_does_not_decide_the_backend(
    hub_ffdnet: RestorationModule, tmp_path: Path, int8_fastest: None
) -> None:
    photos = noisy_photos(10)
    inputs = [torch.zeros(1, 3, 256, 256), *photos]
    references = [restore(hub_ffdnet, x, None) for x in inputs]
    backend = InferenceBackend(hub_ffdnet, "auto", "auto", cache_dir=tmp_path, name="ffdnet")
    outputs = [restore(hub_ffdnet, x, backend) for x in inputs]
    assert_within_the_rule(outputs, references)


def test_a_pick_that_stops_holding_mid_run_falls_back_to_eager(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The periodic check (every ``check_every``-th call, on a crop) catches a backend whose
    output went wrong: a warning names it, the run goes on in eager fp32, and the input it was
    caught on is recomputed, so no wrong output is returned from the check on."""
    module = dncnn()
    photos = [photo().roll(i * 7, dims=-1).contiguous() for i in range(10)]
    references = [restore(module, x, None) for x in photos]
    backend = InferenceBackend(module, "onnx", "fp32", cache_dir=cache, name="dncnn")
    backend.check_every = 3
    outputs = []
    with caplog.at_level(logging.WARNING, logger="m3l.deploy.backends"):
        for i, x in enumerate(photos):
            if i == backend.check_every:  # from the first checked call on, the backend adds an error
                assert backend.chosen.label == "onnx/fp32"
                picked = backend.chosen.forward
                backend.chosen.forward = lambda x, **c: picked(x, **c) + 0.05
            outputs.append(restore(module, x, backend))
    for got, expected in zip(outputs, references):
        assert (got - expected).abs().max() <= B.PARITY_TOLERANCE
    assert backend.chosen.label == "eager/fp32 as is"
    (line,) = [r.getMessage() for r in caplog.records]
    assert (
        "ONNX Runtime fp32" in line
        and "max |diff|" in line
        and "eager" in line
        and f"call {backend.check_every}" in line
    )


def test_the_choice_line_says_what_runs_how_fast_and_how_close(cache: Path) -> None:
    """Issue 27 item 16: the line names the engine and precision in words, the speed-up against
    eager PyTorch fp32 and the closeness to fp32, with the numbers."""
    import re

    module, x = dncnn(), photo()
    picked = InferenceBackend(module, "onnx", "fp32", cache_dir=cache, name="dncnn")
    restore(module, x, picked)
    line = picked.summary
    assert re.search(
        r"ONNX Runtime fp32 runs the net, \d+\.\d\dx as fast as eager PyTorch fp32 on a crop of the "
        r"first input; its output is within [\d.e+-]+ of fp32's \(largest difference, on a 0-1 scale\)\.",
        line,
    ), line
    assert "/fp32" not in line and "|diff|" not in line
    bf16 = InferenceBackend(module, "eager", "bf16", cache_dir=cache, name="dncnn")
    restore(module, x, bf16)
    assert re.search(
        r"eager PyTorch channels-last bf16 runs the net, \d+\.\d\dx as fast as eager PyTorch fp32 .*; its output is "
        r"[\d.]+ dB PSNR from fp32's \(at least 55 dB required\)",
        bf16.summary,
    ), bf16.summary


@pytest.mark.parametrize("damage", ["random", "truncated", "random_with_matching_hash", "no_metadata"])
@pytest.mark.slow
def test_a_damaged_cached_export_is_made_again_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """Issue 26 item 17: a cached ONNX export that is random bytes, cut short, unloadable though
    its recorded hash was made to match, or without its metadata is exported again (once, with a
    log line) and used, instead of every run falling back to eager."""
    import hashlib
    import json
    import os

    module, x = dncnn(), photo()
    expected = restore(module, x, None)
    restore(module, x, InferenceBackend(module, "onnx", "fp32", cache_dir=tmp_path, name="dncnn"))
    (export,) = tmp_path.glob("*.onnx")
    meta = export.with_name(export.name + ".json")
    good = export.read_bytes()
    export.write_bytes(good[: len(good) // 2] if damage == "truncated" else os.urandom(2048))
    if damage == "random_with_matching_hash":
        meta.write_text(
            json.dumps({**json.loads(meta.read_text()), "sha256": hashlib.sha256(export.read_bytes()).hexdigest()})
        )
    if damage == "no_metadata":
        export.write_bytes(good)
        meta.unlink()
    caplog.clear()
    again = InferenceBackend(module, "onnx", "fp32", cache_dir=tmp_path, name="dncnn")
    with caplog.at_level(logging.INFO, logger="m3l.deploy.backends"):
        got = restore(module, x, again)
    assert again.chosen.label == "onnx/fp32", again.summary
    assert (got - expected).abs().max() <= B.PARITY_TOLERANCE
    redone = [r.getMessage() for r in caplog.records if "exporting it again" in r.getMessage()]
    assert len(redone) == 1 and str(export) in redone[0] and exports_made(caplog) == 1
    assert export.read_bytes() != b"" and meta.is_file()
    # the next run uses the fresh export as it is
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="m3l.deploy.backends"):
        restore(module, x, InferenceBackend(module, "onnx", "fp32", cache_dir=tmp_path, name="dncnn"))
    assert exports_made(caplog) == 0 and "exporting it again" not in caplog.text


def test_the_line_when_nothing_is_fast_enough_names_each_way_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27 item 16: when eager fp32 stays, the line says so once, then what was tried, each
    named apart from the reference (no nested brackets, no engine twice)."""
    import re

    monkeypatch.setattr(B, "AUTO_MIN_SPEEDUP", 1000.0)  # nothing is 1000x as fast
    module, x = dncnn(), photo()
    kept = InferenceBackend(module, "auto", "fp32", expected_calls=1)
    restore(module, x, kept)
    line = kept.summary
    assert re.fullmatch(
        r"backend=auto precision=fp32: eager PyTorch fp32 runs the net as it is: no other way ran at least 1000.0x "
        r"as fast on a crop of the first "
        r"input \(tried: eager PyTorch channels-last fp32 \d+\.\d\dx as fast\)\.( Not tried: .+\.)?",
        line,
    ), line
