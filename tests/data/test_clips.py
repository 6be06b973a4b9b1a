"""Video clip datasets (video files, frame folders, panned photos) and the video datamodule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from m3l.data import GaussianNoise, PhotoPanClipDataset, VideoClipDataset, VideoDataModule, VideoH264
from m3l.data.io import read_video, write_image
from m3l.data.samples import sample_dir


@pytest.fixture(scope="module")
def frame_folder(video_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("frames")
    for i, frame in enumerate(read_video(video_file)[:7]):
        write_image(root / "seq_a" / f"{i:04d}.png", frame)
    return root


def test_clips_from_a_video_file(video_file: Path) -> None:
    ds = VideoClipDataset(
        video_file, clip_length=5, degradation=GaussianNoise(sigma=0.1), patch_size=24, clips_per_sequence=3
    )
    item = ds[0]
    assert len(ds) == 3 and item["input"].shape == (5, 3, 24, 24) and item["target"].shape == (3, 24, 24)
    assert float(item["meta"]["sigma"]) == pytest.approx(0.1)


def test_eval_windows_are_consecutive_and_deterministic(video_file: Path) -> None:
    frames = read_video(video_file)
    ds = VideoClipDataset(video_file, clip_length=3, train=False, patch_size=None, max_eval_clips=4, target="clip")
    assert [w[1] for w in ds.windows] == [0, 3, 6, 9]
    torch.testing.assert_close(ds[1]["target"], frames[3:6])
    noisy = VideoClipDataset(
        video_file, clip_length=3, train=False, degradation=GaussianNoise(sigma=0.1), patch_size=16
    )
    assert torch.equal(noisy[2]["input"], noisy[2]["input"])
    assert noisy[2]["relpath"] == "clip.mp4#6"


def test_frame_folders_and_per_frame_parameters(frame_folder: Path) -> None:
    ds = VideoClipDataset(
        frame_folder,
        clip_length=5,
        degradation=GaussianNoise(sigma_range=[0, 0.2]),
        per_frame_params=True,
        patch_size=16,
    )
    item = ds[0]
    assert item["input"].shape == (5, 3, 16, 16) and item["meta"]["sigma"].shape == (5,)
    assert len(set(item["meta"]["sigma"].tolist())) == 5
    same = VideoClipDataset(frame_folder, clip_length=5, degradation=GaussianNoise(sigma_range=[0, 0.2]), patch_size=16)
    assert same[0]["meta"]["sigma"].shape == ()


def test_short_sequences_repeat_their_last_frame(frame_folder: Path) -> None:
    ds = VideoClipDataset(frame_folder, clip_length=9, train=False, patch_size=None, target="clip")
    clip = ds[0]["target"]
    assert clip.shape[0] == 9 and torch.equal(clip[-1], clip[6])


def test_h264_on_clips(video_file: Path) -> None:
    ds = VideoClipDataset(video_file, clip_length=4, degradation=VideoH264(crf=40), patch_size=32, train=False)
    item = ds[0]
    assert item["input"].shape == (4, 3, 32, 32) and float(item["meta"]["crf"]) == 40


def test_photo_pans_move_by_the_drawn_velocity() -> None:
    ds = PhotoPanClipDataset(
        sample_dir("val"), clip_length=5, patch_size=48, clips_per_image=2, max_speed=3, target="clip", train=False
    )
    assert len(ds) == 8
    clip = ds[0]["target"]

    # consecutive frames are shifted crops of one photo: some integer shift matches exactly
    def matches(a: torch.Tensor, b: torch.Tensor) -> bool:
        for dy in range(-3, 4):
            for dx in range(-3, 4):
                ya, yb = slice(max(dy, 0), 48 + min(dy, 0)), slice(max(-dy, 0), 48 + min(-dy, 0))
                xa, xb = slice(max(dx, 0), 48 + min(dx, 0)), slice(max(-dx, 0), 48 + min(-dx, 0))
                if torch.equal(a[:, ya, xa], b[:, yb, xb]):
                    return True
        return False

    assert all(matches(clip[t], clip[t + 1]) for t in range(4))
    assert torch.equal(
        ds[3]["target"],
        PhotoPanClipDataset(
            sample_dir("val"), clip_length=5, patch_size=48, clips_per_image=2, max_speed=3, target="clip", train=False
        )[3]["target"],
    )


def test_video_datamodule_with_files_and_correction_windows(video_file: Path) -> None:
    dm = VideoDataModule(
        train_dir=str(video_file),
        val_dir=str(video_file),
        correct_dir=str(video_file),
        clip_length=3,
        patch_size=16,
        val_patch_size=16,
        batch_size=2,
    )
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["input"].shape == (2, 3, 3, 16, 16)
    assert next(iter(dm.val_dataloader()))["target"].shape == (1, 3, 16, 16)
    dm.setup("predict")
    items = list(dm.predict_dataloader())
    frames = read_video(video_file)
    assert len(items) == 12 and items[0]["input"].shape == (1, 3, 3, 35, 47)
    assert [b["frame_index"][0] for b in items] == list(range(12))
    # windows repeat the edge frames and are centred on their frame
    torch.testing.assert_close(items[0]["input"][0], torch.stack([frames[0], frames[0], frames[1]]))
    torch.testing.assert_close(items[5]["input"][0], frames[4:7])
    torch.testing.assert_close(items[11]["input"][0], torch.stack([frames[10], frames[11], frames[11]]))


def test_unreadable_video_is_recorded(tmp_path: Path, video_file: Path) -> None:
    (tmp_path / "good.mp4").write_bytes(video_file.read_bytes())
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 10)
    ds = VideoClipDataset(tmp_path, clip_length=3, patch_size=16)
    assert len(ds.sequences) == 1 and [Path(f.path).name for f in ds.failures] == ["bad.mp4"]
