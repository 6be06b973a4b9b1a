"""Export to ONNX / torch.export / TorchScript: parity with the eager model, metadata, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from m3l.deploy import export as E
from m3l.deploy import formats
from m3l.deploy.export import ExportError, export_model, metadata_path
from m3l.models.nets import DnCNN, FFDNet, NAFNet
from m3l.models.restoration import RestorationModule

SIZES = [(32, 40), (27, 45)]


def tiny_dncnn(channels: int = 3) -> RestorationModule:
    torch.manual_seed(0)
    return RestorationModule(DnCNN(in_channels=channels, depth=3, features=8), residual=True).eval()


@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=pytest.mark.slow), "pt2", "torchscript"])
def test_export_matches_eager_and_writes_metadata(tmp_path: Path, fmt: str) -> None:
    out = export_model(tiny_dncnn(), tmp_path / f"m{formats.FORMATS[fmt]}", fmt=fmt, name="tiny", sizes=SIZES)
    meta = json.loads(metadata_path(out).read_text())
    assert out.is_file() and meta["format"] == fmt and meta["model"] == "tiny"
    assert meta["layout"] == "NCHW" and meta["channels"] == 3 and meta["pad_multiple"] == 1
    assert meta["input_range"] == [0.0, 1.0] and meta["m3l_version"]
    assert 0 <= meta["parity"]["max_abs_diff"] <= meta["parity"]["tolerance"] == 1e-4
    # dynamic batch / height / width: a size the parity check did not use
    run = formats.load_artifact(out, fmt)
    x = torch.rand(3, 3, 50, 33)
    with torch.no_grad():
        expected = tiny_dncnn()(x).numpy()
    np.testing.assert_allclose(run(x.numpy())[0], expected, atol=1e-5)


@pytest.mark.slow
def test_condition_and_pad_multiple_onnx(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = RestorationModule(FFDNet(in_channels=1, depth=3, features=8), residual=False).eval()
    out = export_model(module, tmp_path / "ffdnet.onnx", fmt="onnx", name="ffdnet", sizes=SIZES)
    meta = json.loads(metadata_path(out).read_text())
    assert meta["conditions"] == ["sigma"] and meta["pad_multiple"] == 2 and meta["channels"] == 1


@pytest.mark.slow
def test_nafnet_onnx_odd_sizes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = NAFNet(in_channels=3, width=8, enc_blocks=[1, 1], middle_blocks=1, dec_blocks=[1, 1])
    module = RestorationModule(net, residual=True).eval()
    out = export_model(module, tmp_path / "naf.onnx", fmt="onnx", name="naf", sizes=[(33, 47)])
    assert json.loads(metadata_path(out).read_text())["pad_multiple"] == 4


@pytest.mark.slow
def test_video_net_pt2(tmp_path: Path) -> None:
    from m3l.models.nets import FastDVDnet

    torch.manual_seed(0)
    module = RestorationModule(FastDVDnet(in_channels=3, noise_map=True), residual=False).eval()
    out = export_model(module, tmp_path / "video.pt2", fmt="pt2", name="video", sizes=[(24, 28)])
    meta = json.loads(metadata_path(out).read_text())
    assert meta["kind"] == "video" and meta["layout"] == "NTCHW" and meta["temporal_window"] == 5


@pytest.mark.slow
def test_multitask_model_one_output_per_head(tmp_path: Path) -> None:
    from m3l import compose
    from m3l.engine.experiment import Experiment

    net = Experiment(compose("mtl_allinone", [f"paths.runs_dir={tmp_path}/runs"])).net
    out = export_model(net, tmp_path / "mtl.pt2", fmt="pt2", name="mtl", sizes=[(24, 30)])
    meta = json.loads(metadata_path(out).read_text())
    assert meta["kind"] == "multitask" and meta["outputs"] == ["denoise", "deblur", "jpeg"]
    outputs = formats.load_artifact(out, "pt2")(np.random.rand(2, 3, 20, 22).astype(np.float32))
    assert [o.shape for o in outputs] == [(2, 3, 20, 22)] * 3


def test_parity_failure_rejects_the_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = formats.load_artifact

    def off_by_a_bit(path: Path, fmt: str):  # an exporter that silently changed the numbers
        run = real(path, fmt)
        return lambda *arrays: [o + 0.01 for o in run(*arrays)]

    monkeypatch.setattr(E, "load_artifact", off_by_a_bit)
    target = tmp_path / "m.pt2"
    with pytest.raises(ExportError, match=r"parity check failed.*0\.01.*tolerance 0\.0001"):
        export_model(tiny_dncnn(), target, fmt="pt2", sizes=SIZES)
    assert list(tmp_path.iterdir()) == []


def test_existing_artifact_is_never_replaced_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "m.pt2"
    target.write_bytes(b"mine")
    with pytest.raises(ExportError, match="already exists.*overwrite=true"):
        export_model(tiny_dncnn(), target, fmt="pt2", sizes=SIZES)
    assert target.read_bytes() == b"mine"
    export_model(tiny_dncnn(), target, fmt="pt2", sizes=SIZES, overwrite=True)
    assert target.read_bytes() != b"mine"


def test_bad_format_and_tolerance(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="use one of: onnx, pt2, torchscript"):
        export_model(tiny_dncnn(), tmp_path / "m.x", fmt="tflite")
    with pytest.raises(ExportError, match="tolerance must be a positive number"):
        export_model(tiny_dncnn(), tmp_path / "m.pt2", fmt="pt2", tolerance=-1)
    assert list(tmp_path.iterdir()) == []


def test_torchscript_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "_torchscript_warned", False)
    for name in ("a.ts", "b.ts"):
        export_model(tiny_dncnn(), tmp_path / name, fmt="torchscript", sizes=[(20, 24)])
    assert sum("TorchScript is deprecated" in r.message for r in caplog.records) == 1


@pytest.mark.slow
def test_export_config_composes_and_exports_from_python(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from m3l import compose
    from m3l.deploy.export import export_experiment
    from m3l.errors import CheckpointError
    from m3l.engine.experiment import Experiment

    base = [f"paths.runs_dir={tmp_path}/runs", "parity.sizes=[[24,20]]", "format=pt2"]
    cfg = compose("demo", base, verb="export")
    assert cfg.verb == "export" and cfg.format == "pt2" and cfg.parity.tolerance == 1e-4 and cfg.output is None
    with pytest.raises(CheckpointError, match="needs weights: pass checkpoint=PATH"):
        export_experiment(Experiment(cfg))
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in Experiment(cfg).net.state_dict().items()}, str(weights))
    exp = Experiment(compose("demo", [*base, f"checkpoint={weights}"], verb="export"))
    out = export_experiment(exp)
    assert out == exp.output_dir / "demo.pt2" and metadata_path(out).is_file()
    assert json.loads(metadata_path(out).read_text())["tiling"]["overlap"] == 32
