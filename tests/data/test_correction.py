"""Correction inputs and serializers through a real Lightning ``Trainer.predict``."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data import FAILURES_FILENAME, ImageCorrectionDataset, ImageSerializer, RestorationDataModule, VideoSerializer
from m3l.data.io import probe_video, read_video

from .conftest import BAD_FILES, GOOD_IMAGES


# inputs whose names differ only by suffix keep it when both become PNG
OUTPUT = {
    r: (r + ".png" if r in ("photo.tif", "photo.webp") else str(Path(r).with_suffix(".png"))) for r in GOOD_IMAGES
}


class Brighten(L.LightningModule):
    """A stand-in net: adds ``delta`` (so outputs differ from inputs) and checks the contract."""

    def __init__(self, delta: float = 0.0, channels: int | None = None) -> None:
        super().__init__()
        self.delta, self.channels = delta, channels

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch["input"]
        assert x.ndim == 4 and x.shape[-2:] == (batch["height"][0], batch["width"][0])
        return (x + self.delta).clamp(0, 1)


def predict(datamodule, serializer, module=None) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[serializer],
    )
    trainer.predict(module or Brighten(), datamodule=datamodule, return_predictions=False)


def test_correction_dataset_items(image_tree: Path) -> None:
    ds = ImageCorrectionDataset(image_tree, channels=None)
    assert {item[1] for item in ds.items} == set(GOOD_IMAGES)
    assert {Path(f.path).name for f in ds.failures} == BAD_FILES
    reasons = {Path(f.path).name: f.reason for f in ds.failures}
    assert "not an image or a video" in reasons["notes.txt"] and "not a readable image" in reasons["truncated.png"]
    item = next(ds[i] for i in range(len(ds)) if ds[i]["relpath"] == "nested/gray16.png")
    assert (item["mode"], item["bit_depth"], item["height"], item["width"]) == ("I;16", 16, 41, 53)


def test_folder_round_trip_keeps_sizes_modes_and_paths(image_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dm = RestorationDataModule(correct_dir=str(image_tree), channels=3)
    serializer = ImageSerializer(out)
    predict(dm, serializer)
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {OUTPUT[r] for r in GOOD_IMAGES}
    assert written == expected | {FAILURES_FILENAME}
    for relpath, (mode, bit_depth, h, w) in GOOD_IMAGES.items():
        img = Image.open(out / OUTPUT[relpath])
        assert img.size == (w, h), relpath
        expected_mode = {"L": "L", "I;16": "I;16", "RGBA": "RGBA"}.get(mode, "RGB")
        assert img.mode == expected_mode, relpath
    # identity net: 8-bit PNG inputs come back exactly, 16-bit keeps 16-bit values
    src16 = np.asarray(Image.open(image_tree / "nested" / "gray16.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "nested" / "gray16.png")), src16)
    np.testing.assert_array_equal(
        np.asarray(Image.open(out / "rgb_odd.png")), np.asarray(Image.open(image_tree / "rgb_odd.png"))
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(out / "nested" / "rgba.png")), np.asarray(Image.open(image_tree / "nested" / "rgba.png"))
    )
    # every bad input named with its reason, in the log list and the failures file
    assert {Path(f.path).name for f in serializer.failures} == BAD_FILES
    lines = (out / FAILURES_FILENAME).read_text().splitlines()
    assert lines[0] == "path\treason" and {Path(line.split("\t")[0]).name for line in lines[1:]} == BAD_FILES


def test_existing_outputs_are_kept_unless_overwrite(image_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    predict(RestorationDataModule(correct_dir=str(image_tree / "rgb_odd.png")), ImageSerializer(out))
    before = (out / "rgb_odd.png").read_bytes()
    again = ImageSerializer(out)
    predict(RestorationDataModule(correct_dir=str(image_tree / "rgb_odd.png")), again, Brighten(0.2))
    assert (out / "rgb_odd.png").read_bytes() == before
    assert len(again.failures) == 1 and "serializer.overwrite=true" in again.failures[0].reason
    forced = ImageSerializer(out, overwrite=True)
    predict(RestorationDataModule(correct_dir=str(image_tree / "rgb_odd.png")), forced, Brighten(0.2))
    assert (out / "rgb_odd.png").read_bytes() != before and forced.failures == []
    assert not (out / FAILURES_FILENAME).exists() or forced.failures == []


def test_output_inside_input_is_refused(image_tree: Path, tmp_path: Path) -> None:
    for root in (image_tree, image_tree / "nested" / "out"):
        with pytest.raises(ValueError, match="allow_inside_input=true"):
            predict(RestorationDataModule(correct_dir=str(image_tree)), ImageSerializer(root))
    tree = tmp_path / "tree"
    tree.mkdir()
    Image.open(image_tree / "gray.png").save(tree / "gray.png")
    predict(RestorationDataModule(correct_dir=str(tree)), ImageSerializer(tree / "restored", allow_inside_input=True))
    assert (tree / "restored" / "gray.png").is_file()


def test_single_file_and_format_option(image_tree: Path, tmp_path: Path) -> None:
    serializer = ImageSerializer(tmp_path / "o", format="jpg")
    predict(RestorationDataModule(correct_dir=str(image_tree / "nested" / "rgba.png")), serializer)
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["rgba.jpg"]
    assert Image.open(tmp_path / "o" / "rgba.jpg").size == (40, 30)


@pytest.mark.parametrize("bad", ["missing", "empty"])
def test_missing_or_empty_input_is_a_failure(tmp_path: Path, bad: str) -> None:
    path = tmp_path / bad
    if bad == "empty":
        path.mkdir()
    serializer = ImageSerializer(tmp_path / "out")
    predict(RestorationDataModule(correct_dir=str(path)), serializer)
    assert [Path(f.path).name for f in serializer.failures] == [bad]
    assert (tmp_path / "out" / FAILURES_FILENAME).is_file()


def test_same_size_inputs_are_batched(tmp_path: Path, image_tree: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.open(image_tree / "rgb_odd.png").save(src / f"{i}.png")
    dm = RestorationDataModule(correct_dir=str(src), val_batch_size=2)
    dm.setup("predict")
    assert next(iter(dm.predict_dataloader()))["input"].shape == (2, 3, 45, 67)
    mixed = RestorationDataModule(correct_dir=str(image_tree), val_batch_size=2)
    mixed.setup("predict")
    assert mixed.predict_dataloader().batch_size == 1


def test_gray_net_on_colour_files(image_tree: Path, tmp_path: Path) -> None:
    serializer = ImageSerializer(tmp_path / "out")
    predict(RestorationDataModule(correct_dir=str(image_tree / "rgb_odd.png"), channels=1), serializer)
    assert Image.open(tmp_path / "out" / "rgb_odd.png").mode == "L"


def test_video_round_trip(video_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "clip.mp4").write_bytes(video_file.read_bytes())
    Image.new("RGB", (9, 7), (10, 200, 30)).save(src / "still.png")
    (src / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really")
    out = tmp_path / "out"
    serializer = VideoSerializer(out, lossless=True)
    predict(RestorationDataModule(correct_dir=str(src)), serializer)
    info = probe_video(out / "sub" / "clip.mkv")
    assert (info.num_frames, info.height, info.width, info.fps) == (12, 35, 47, 10.0)
    torch.testing.assert_close(read_video(out / "sub" / "clip.mkv"), read_video(video_file), atol=0, rtol=0)
    assert Image.open(out / "still.png").size == (9, 7)
    assert [Path(f.path).name for f in serializer.failures] == ["broken.mkv"]


def test_video_frames_through_the_image_serializer(video_file: Path, tmp_path: Path) -> None:
    predict(RestorationDataModule(correct_dir=str(video_file)), ImageSerializer(tmp_path / "frames"))
    frames = sorted((tmp_path / "frames" / "clip").iterdir())
    assert [f.name for f in frames[:2]] == ["000000.png", "000001.png"] and len(frames) == 12


def test_symlink_loop_in_the_input_folder_is_walked_once(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    Image.new("RGB", (12, 10), (200, 10, 10)).save(inputs / "a.png")
    Image.new("L", (9, 7), 90).save(inputs / "sub" / "b.png")
    (inputs / "sub" / "up").symlink_to(inputs, target_is_directory=True)
    data = ImageCorrectionDataset(inputs)
    assert sorted(relpath for _, relpath, _ in data.items) == ["a.png", "sub/b.png"] and not data.failures
    out = tmp_path / "out"
    predict(RestorationDataModule(correct_dir=str(inputs)), ImageSerializer(out))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.png", "sub/b.png"]


def test_outputs_never_replace_an_input_file_even_when_inside_is_allowed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    Image.new("RGB", (12, 10), (200, 10, 10)).save(tree / "a.png")
    before = (tree / "a.png").read_bytes()
    serializer = ImageSerializer(tree, format=None, overwrite=True, allow_inside_input=True)
    predict(RestorationDataModule(correct_dir=str(tree)), serializer, Brighten(delta=0.3))
    assert (tree / "a.png").read_bytes() == before
    assert len(serializer.failures) == 1 and "is the input file" in serializer.failures[0].reason
    with pytest.raises(ValueError, match="is the input folder") as err:  # a file's folder is its input folder
        predict(RestorationDataModule(correct_dir=str(tree / "a.png")), ImageSerializer(tree, overwrite=True))
    assert "serializer.root_dir" in str(err.value) and (tree / "a.png").read_bytes() == before


class ThreadNoting(ImageSerializer):
    """The real serializer, noting which thread wrote each item."""

    def write_image_item(self, x, item) -> None:
        import threading

        self.threads = getattr(self, "threads", set()) | {threading.current_thread().name}
        super().write_image_item(x, item)


@pytest.mark.parametrize("write_ahead", [0, 2])
def test_writes_off_the_compute_thread_list_their_failures(image_tree: Path, tmp_path: Path, write_ahead: int) -> None:
    out = tmp_path / "out"
    (out / "rgb_odd.png").mkdir(parents=True)  # a folder where an output goes: that write fails
    serializer = ThreadNoting(out, write_ahead=write_ahead, overwrite=True)
    predict(RestorationDataModule(correct_dir=str(image_tree), channels=3), serializer)
    assert serializer.threads == ({"m3l-writer"} if write_ahead else {"MainThread"})
    failed = {Path(f.path).relative_to(out).as_posix(): f.reason for f in serializer.failures if str(out) in f.path}
    assert list(failed) == ["rgb_odd.png"] and failed["rgb_odd.png"].startswith("write failed")
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {OUTPUT[r] for r in GOOD_IMAGES} - {"rgb_odd.png"} | {FAILURES_FILENAME}
    assert "rgb_odd.png\twrite failed" in (out / FAILURES_FILENAME).read_text()


def test_write_ahead_must_be_a_count() -> None:
    from m3l.errors import ConfigError

    with pytest.raises(ConfigError, match="serializer.write_ahead must be an integer >= 0"):
        ImageSerializer("out", write_ahead=-1)
