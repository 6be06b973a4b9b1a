"""m3l.deploy.runtime: exported models on images, folders and videos, with and without torch."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.samples import sample_paths
from m3l.deploy import runtime as R
from m3l.deploy.export import export_model
from m3l.models.tiling import TiledPredictor
from m3l.models.nets import DnCNN
from m3l.models.restoration import RestorationModule

REPO = Path(__file__).resolve().parents[2]
RUNTIME_FILE = REPO / "src" / "m3l" / "deploy" / "runtime.py"


def tiny_dncnn() -> RestorationModule:
    torch.manual_seed(0)
    return RestorationModule(DnCNN(in_channels=3, depth=3, features=8), residual=True).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {
        fmt: export_model(tiny_dncnn(), root / f"tiny{ext}", fmt=fmt, name="tiny", sizes=[(24, 30)])
        for fmt, ext in (("onnx", ".onnx"), ("pt2", ".pt2"))
    }


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Real photos (the packaged samples, downsized), one gray and one in a subfolder."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    a, b = sample_paths("val")[:2]
    Image.open(a).convert("RGB").resize((150, 101)).save(root / "a.png")
    Image.open(b).convert("L").resize((90, 77)).save(root / "sub" / "b.png")
    return root


@pytest.mark.parametrize("blend", ["gaussian", "linear", "none"])
@pytest.mark.parametrize("multiple", [1, 4])
@pytest.mark.parametrize(("tile", "overlap", "batch"), [(48, 16, 4), (32, 0, 1), (40, 13, 3)])
@pytest.mark.parametrize("size", [(97, 131), (31, 45), (150, 61)])
def test_numpy_tiling_equals_tiled_predictor(
    blend: str, multiple: int, tile: int, overlap: int, batch: int, size: tuple[int, int]
) -> None:
    """The runtime's numpy copy of the tiling gives what m3l.models.tiling gives: odd sizes,
    sizes below one tile, no overlap and an overlap off the pad multiple's grid."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).eval()
    x = torch.rand(1, 3, *size)
    expected = TiledPredictor(tile_size=tile, overlap=overlap, batch_size=batch, blend=blend)(
        conv, x, pad_multiple=multiple
    )
    with torch.no_grad():
        got = R.tiled(lambda t: conv(torch.from_numpy(t)).numpy(), x[0].numpy(), multiple, tile, overlap, batch, blend)
    assert got.shape == (3, *size)
    np.testing.assert_allclose(got, expected[0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize(("tile", "overlap"), [(48, 16), (32, 6)])
def test_numpy_tiling_of_video_windows_equals_tiled_predictor(tile: int, overlap: int) -> None:
    """Windows ``(T, C, H, W)`` in, the centre frame's restoration out, as for video nets."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(9, 3, 3, padding=1).eval()

    def net(windows: torch.Tensor) -> torch.Tensor:  # (N, 3, 3, h, w) -> (N, 3, h, w)
        return conv(windows.flatten(1, 2))

    x = torch.rand(1, 3, 3, 71, 103)
    expected = TiledPredictor(tile_size=tile, overlap=overlap, blend="gaussian")(net, x, pad_multiple=4)
    with torch.no_grad():
        got = R.tiled(lambda t: net(torch.from_numpy(t)).numpy(), x[0].numpy(), 4, tile, overlap, 4, "gaussian")
    np.testing.assert_allclose(got, expected[0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_folder_correction_matches_eager_tiled(
    exported: dict[str, Path], photos: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / "out"
    written, failures = R.correct_path(exported[fmt], photos, out, tiling={"tile_size": 64, "overlap": 24})
    assert not failures and sorted(p.relative_to(out).as_posix() for p in written) == ["a.png", "sub/b.png"]
    assert Image.open(out / "sub" / "b.png").mode == "L"  # gray stays gray
    x = torch.from_numpy(np.asarray(Image.open(photos / "a.png"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    module = tiny_dncnn()
    with torch.no_grad():
        eager = TiledPredictor(tile_size=64, overlap=24)(module.restore, x).clamp(0, 1)[0]
    expected = (eager.permute(1, 2, 0).numpy() * 255).round()
    got = np.asarray(Image.open(out / "a.png"), dtype=np.float32)
    assert np.abs(got - expected).max() <= 1


def test_cli_refuses_to_overwrite_and_to_write_inside_input(
    exported: dict[str, Path], photos: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "m3l.deploy.runtime", str(exported["onnx"]), str(photos)]
    first = subprocess.run([*cmd, str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "out" / "a.png").read_bytes()
    again = subprocess.run([*cmd, str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 1 and "exists; pass --overwrite" in again.stderr
    assert "a.png\t" in (tmp_path / "out" / "failures.tsv").read_text()
    assert (tmp_path / "out" / "a.png").read_bytes() == before
    inside = subprocess.run([*cmd, str(photos / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert inside.returncode == 2 and "inside the input folder" in inside.stderr


def test_missing_metadata_is_explained(exported: dict[str, Path], tmp_path: Path) -> None:
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(exported["onnx"].read_bytes())
    with pytest.raises(R.RuntimeInputError, match="lone.onnx.json is missing"):
        R.ExportedModel(lone)


def test_video_is_corrected(exported: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("av")
    from m3l.data.io import write_video

    frames = torch.from_numpy(
        np.asarray(Image.open(sample_paths("val")[0]).convert("RGB").resize((64, 48)), dtype=np.float32) / 255
    ).permute(2, 0, 1)
    source = tmp_path / "in" / "clip.mp4"
    write_video(source, torch.stack([frames.roll(k, -1) for k in range(4)]), fps=10)
    written, failures = R.correct_path(exported["onnx"], source.parent, tmp_path / "out")
    assert not failures and written == [tmp_path / "out" / "clip.mp4"]
    import av

    with av.open(str(written[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4


@pytest.fixture(scope="session")
def torchless_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with numpy, Pillow and onnxruntime only (no torch, Lightning, Hydra)."""
    root = Path(os.environ.get("M3L_TEST_VENV_CACHE", tmp_path_factory.getbasetemp() / "torchless"))
    python = root / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "numpy", "pillow", "onnxruntime"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            pytest.skip(f"could not build the torch-free venv: {done.stderr[-500:]}")
    return python


@pytest.mark.slow
def test_onnx_runtime_needs_no_torch(
    torchless_python: Path, exported: dict[str, Path], photos: Path, tmp_path: Path
) -> None:
    check = subprocess.run([str(torchless_python), "-c", "import torch"], capture_output=True)
    assert check.returncode != 0, "the venv must not have torch"
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # as a module of the source tree (m3l/__init__ and m3l/deploy/__init__ import no torch) ...
    as_module = subprocess.run(
        [str(torchless_python), "-m", "m3l.deploy.runtime", str(exported["onnx"]), str(photos), str(tmp_path / "a")],
        capture_output=True,
        text=True,
        env={**clean_env, "PYTHONPATH": str(REPO / "src")},
        timeout=300,
    )
    assert as_module.returncode == 0, as_module.stderr
    # ... and as a single file copied next to nothing else
    as_file = subprocess.run(
        [str(torchless_python), str(RUNTIME_FILE), str(exported["onnx"]), str(photos), str(tmp_path / "b")],
        capture_output=True,
        text=True,
        env=clean_env,
        cwd=tmp_path,
        timeout=300,
    )
    assert as_file.returncode == 0, as_file.stderr
    for rel in ("a.png", "sub/b.png"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    # the pt2 path explains that it needs torch
    pt2 = subprocess.run(
        [str(torchless_python), str(RUNTIME_FILE), str(exported["pt2"]), str(photos), str(tmp_path / "c")],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=300,
    )
    assert pt2.returncode == 2 and "need torch" in pt2.stderr


def test_modes_are_kept_16bit_gray_and_alpha(exported: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    base = np.asarray(Image.open(sample_paths("val")[1]).convert("L").resize((40, 30)), dtype=np.uint16) * 257
    Image.fromarray(base.astype(np.uint16)).save(src / "deep.png")
    rgba = Image.open(sample_paths("val")[0]).convert("RGBA").resize((40, 30))
    rgba.putalpha(Image.fromarray(np.full((30, 40), 77, dtype=np.uint8)))
    rgba.save(src / "alpha.png")
    written, failures = R.correct_path(exported["onnx"], src, tmp_path / "out")
    assert not failures
    deep = Image.open(tmp_path / "out" / "deep.png")
    assert deep.mode.startswith("I") and np.asarray(deep).max() > 255  # 16-bit in, 16-bit out
    alpha = Image.open(tmp_path / "out" / "alpha.png")
    assert alpha.mode == "RGBA" and np.all(np.asarray(alpha)[..., 3] == 77)


@pytest.mark.slow
def test_multitask_heads_and_missing_condition(tmp_path: Path, photos: Path) -> None:
    from m3l import compose
    from m3l.engine.experiment import Experiment
    from m3l.models.nets import FFDNet

    net = Experiment(compose("mtl_allinone", [f"paths.runs_dir={tmp_path}/runs"])).net
    mtl = export_model(net, tmp_path / "mtl.onnx", fmt="onnx", name="mtl", sizes=[(24, 30)])
    model = R.ExportedModel(mtl)
    x = np.random.default_rng(0).random((3, 33, 41), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)[None])["jpeg"][0].clamp(0, 1).numpy()
    np.testing.assert_allclose(model.restore(x, output="jpeg"), expected, atol=1e-5)
    torch.manual_seed(0)
    ffdnet = export_model(
        RestorationModule(FFDNet(in_channels=3, depth=3, features=8)).eval(),
        tmp_path / "ffdnet.pt2",
        fmt="pt2",
        sizes=[(20, 22)],
    )
    written, failures = R.correct_path(ffdnet, photos, tmp_path / "f")  # sigma estimated per image
    assert len(written) == 2 and not failures
    with pytest.raises(R.RuntimeInputError, match="pass --sigma"):  # a raw call has nothing to estimate on
        R.ExportedModel(ffdnet)(np.zeros((1, 3, 8, 8), dtype=np.float32))
    written, failures = R.correct_path(ffdnet, photos, tmp_path / "g", sigma=25 / 255)
    assert len(written) == 2 and not failures


@pytest.mark.parametrize("frames", [1, 2, 4, 7])
def test_numpy_sliding_windows_equal_torch(frames: int) -> None:
    from m3l.models.tiling import sliding_windows

    stream = [np.full((1, 2, 2), k, dtype=np.float32) for k in range(frames)]
    got = list(R.sliding_windows(stream, 5))
    expected = list(sliding_windows([torch.from_numpy(f) for f in stream], 5))
    assert len(got) == len(expected) == frames
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e.numpy())


@pytest.mark.slow
def test_video_net_corrects_a_video(tmp_path: Path) -> None:
    pytest.importorskip("av")
    import av

    from m3l.data.io import write_video
    from m3l.models.nets import FastDVDnet

    torch.manual_seed(0)
    module = RestorationModule(FastDVDnet(in_channels=3, noise_map=True)).eval()
    artifact = export_model(module, tmp_path / "fdvd.pt2", fmt="pt2", sizes=[(24, 28)])
    frame = torch.from_numpy(
        np.asarray(Image.open(sample_paths("val")[0]).convert("RGB").resize((36, 30)), dtype=np.float32) / 255
    ).permute(2, 0, 1)
    write_video(tmp_path / "in" / "clip.mp4", torch.stack([frame.roll(k, -1) for k in range(3)]), fps=10)
    written, failures = R.correct_path(artifact, tmp_path / "in", tmp_path / "out", sigma=25 / 255)
    assert not failures
    with av.open(str(written[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3


def test_inputs_mapping_to_one_output_keep_their_suffix(
    exported: dict[str, Path], photos: Path, tmp_path: Path
) -> None:
    Image.open(photos / "a.png").save(photos / "a.jpg")  # a.png and a.jpg would both become a.png
    written, failures = R.correct_path(exported["onnx"], photos, tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written)
    assert not failures and names == ["a.jpg.png", "a.png", "sub/b.png"]


def test_decompression_bomb_is_a_listed_failure_and_the_batch_goes_on(
    exported: dict[str, Path], photos: Path, tmp_path: Path, huge_png: Path
) -> None:
    import shutil
    import time

    shutil.copy(huge_png, photos / "bomb.png")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = tmp_path / "out"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "m3l.deploy.runtime", str(exported["onnx"]), str(photos), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "14000x14000" in done.stderr
    assert time.perf_counter() - start < 60
    assert (out / "a.png").is_file() and (out / "sub" / "b.png").is_file()
    listed = (out / "failures.tsv").read_text()
    assert f"{photos / 'bomb.png'}\t" in listed and "M3L_MAX_IMAGE_PIXELS" in listed


def test_video_over_the_pixel_limit_is_a_listed_failure(exported: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("av")
    from m3l.data.io import write_video

    write_video(tmp_path / "in" / "clip.mp4", torch.rand(2, 3, 16, 16), fps=10)
    monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", "255")
    written, failures = R.correct_path(exported["onnx"], tmp_path / "in", tmp_path / "out")
    assert not written and len(failures) == 1 and "16x16 = 256 pixels is over the limit of 255" in failures[0][1]


@pytest.mark.parametrize("limit", [None, "5000"])
def test_every_decoded_frame_is_checked_not_only_the_header(
    exported: dict[str, Path], tmp_path: Path, monkeypatch, limit
) -> None:
    """A frame of another size than the first, or over the pixel limit, fails the video (listed,
    nothing written), never a crop; the container's header names the first size only."""
    pytest.importorskip("av")
    from tests.data.conftest import size_changing_mp4

    (tmp_path / "in").mkdir()
    size_changing_mp4(tmp_path / "in" / "clip.mp4", (64, 48), 4, (128, 96))
    if limit:
        monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", limit)  # 64x48 = 3072 fits, 128x96 does not
    written, failures = R.correct_path(exported["onnx"], tmp_path / "in", tmp_path / "out")
    assert not written and len(failures) == 1, failures
    reason = failures[0][1]
    assert "frame 4" in reason and (
        "over the limit of 5,000" in reason if limit else "128x96" in reason and "64x48" in reason
    )
    assert not list((tmp_path / "out").rglob("*.mp4"))


def test_symlink_loop_in_the_input_folder_is_walked_once(
    exported: dict[str, Path], photos: Path, tmp_path: Path
) -> None:
    (photos / "sub" / "up").symlink_to(photos, target_is_directory=True)
    written, failures = R.correct_path(exported["onnx"], photos, tmp_path / "out")
    assert not failures and sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "a.png",
        "sub/b.png",
    ]


def test_output_rule_refuses_the_input_and_its_folder(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "photo.png").write_bytes(b"x")
    for root, source in ((inputs, inputs), (inputs / "out", inputs), (inputs, inputs / "photo.png")):
        with pytest.raises(R.OutputPathError, match=f"the output folder {root} is") as err:
            R.check_output_paths([source], root)
        assert str(inputs) in str(err.value)
    R.check_output_paths([inputs / "photo.png"], tmp_path / "out", [tmp_path / "out" / "photo.png"])
    # one input file: a new folder beside it is not among the inputs (docs/correction.md)
    R.check_output_paths([inputs / "photo.png"], inputs / "out", [inputs / "out" / "photo.png"])
    with pytest.raises(R.OutputPathError, match="inside the input folder"):
        R.check_output_paths([inputs], inputs / "out", [inputs / "out" / "photo.png"], allow_inside_input=False)
    with pytest.raises(R.OutputPathError, match="is the input file"):
        R.check_output_paths([inputs / "photo.png"], inputs, [inputs / "photo.png"], allow_inside_input=True)


def test_cli_refuses_to_write_over_a_single_input_file(exported: dict[str, Path], photos: Path) -> None:
    before = (photos / "a.png").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for extra in (["--overwrite"], []):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "m3l.deploy.runtime",
                str(exported["onnx"]),
                str(photos / "a.png"),
                str(photos),
                *extra,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 2 and "is the input folder" in done.stderr and str(photos) in done.stderr
        assert (photos / "a.png").read_bytes() == before and not (photos / "failures.tsv").exists()


def test_runtime_and_export_outputs_follow_the_users_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        model = export_model(tiny_dncnn(), tmp_path / "m.onnx", fmt="onnx", name="m", sizes=[(20, 22)])
        written = R.write_image(tmp_path / "o" / "a.png", np.zeros((3, 8, 8), np.float32), {"mode": "RGB"})
    finally:
        os.umask(old)
    assert model.stat().st_mode & 0o777 == 0o644
    assert written.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("sigma", [0.0, 5 / 255, 25 / 255, 60 / 255])
def test_numpy_noise_estimate_equals_the_one_correct_uses(channels: int, sigma: float) -> None:
    """The runtime's numpy noise estimator gives what m3l.models.noise_level gives (what
    ``correct`` uses) on real photos of odd and even sizes, clean or noisy, flat regions included."""
    from m3l.models.noise_level import estimate_noise_sigma

    rng = np.random.default_rng(7)
    for k, (path, size) in enumerate(zip(sample_paths("val")[:2], [(101, 77), (64, 48)])):
        image = Image.open(path).convert("L" if channels == 1 else "RGB").resize(size)
        clean = np.asarray(image, dtype=np.float32).reshape(size[1], size[0], channels).transpose(2, 0, 1) / 255
        clean[:, :20, :20] = 0.5  # an exactly flat patch: its zero coefficients are left out by both
        x = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)
        expected = float(estimate_noise_sigma(torch.from_numpy(x)[None])[0])
        assert R.estimate_noise_sigma(x) == pytest.approx(expected, rel=1e-6, abs=1e-9), (k, sigma)
    with pytest.raises(R.RuntimeInputError, match="pass --sigma"):
        R.estimate_noise_sigma(np.zeros((3, 7, 30), dtype=np.float32))
