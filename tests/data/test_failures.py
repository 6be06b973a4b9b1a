"""failures.tsv (issue 26 items 8, 17): any file name round-trips through Python's csv reader,
and a list that cannot be written is logged whole instead of lost; a video whose frames change
size is a listed failure in both serializers, never a crop (issue 26 item 10)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from m3l.data import ImageSerializer, VideoSerializer
from m3l.data.failures import Failure, read_failures, write_failures

NAMES = [
    "plain.png",
    "tab\there.png",
    "new\nline.png",
    'quote"d, comma.png',
    "ünïcode.png",
    " lead and trail ",
    os.fsdecode(b"latin1-\xe9\xff.png"),
    "back\\slash\r.png",
]


def test_any_file_name_round_trips_through_the_csv_reader(tmp_path: Path) -> None:
    failures = [Failure(f"/in/{name}", f"reason {i}\twith a tab\nand a newline") for i, name in enumerate(NAMES)]
    target = write_failures(tmp_path / "failures.tsv", failures)
    assert target == tmp_path / "failures.tsv"
    with open(target, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["path", "reason"] and len(rows) == 1 + len(NAMES)
    assert [row[0] for row in rows[1:]] == [f"/in/{name}" for name in NAMES]
    assert os.fsencode(rows[7][0]) == b"/in/latin1-\xe9\xff.png"  # the file system's bytes
    assert [row[1] for row in rows[1:]] == [f"reason {i} with a tab and a newline" for i in range(len(NAMES))]
    assert read_failures(target) == [Failure(f.path, " ".join(f.reason.split())) for f in failures]
    assert target.read_bytes().count(b"\n") >= 1 + len(NAMES)  # quoted newlines add lines, never rows


def test_a_list_that_cannot_be_written_is_logged_whole(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "failures.tsv" / "a folder in the way").mkdir(parents=True)  # no rename replaces it, root or not
    failures = [Failure("/in/a.png", "not a readable image"), Failure(os.fsdecode(b"/in/b\xff.png"), "too large")]
    with caplog.at_level(logging.ERROR):
        assert write_failures(tmp_path / "failures.tsv", failures) is None
    assert "could not write the list of failures to" in caplog.text
    assert "/in/a.png\tnot a readable image" in caplog.text and "too large" in caplog.text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


class FramesOfTwoSizes(Dataset):
    """A user's own frames of one video, ``clip.mp4``, whose size changes at frame 3 (their
    metadata gives the size of each frame, as m3l's items do)."""

    sizes = [(24, 32)] * 3 + [(40, 48)] * 2

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> dict:
        h, w = self.sizes[i]
        return {
            "input": torch.full((3, h, w), 0.5),
            "relpath": "clip.mp4",
            "frame_index": i,
            "num_frames": len(self.sizes),
            "fps": 25.0,
            "height": h,
            "width": w,
            "mode": "RGB",
        }


class Identity(L.LightningModule):
    def predict_step(self, batch, batch_idx):
        return {"output": batch["input"]}


@pytest.mark.parametrize("kind", [ImageSerializer, VideoSerializer])
def test_a_frame_size_change_fails_the_video_in_both_serializers(tmp_path: Path, kind: type) -> None:
    if kind is VideoSerializer:
        pytest.importorskip("av")
    out = tmp_path / "out"
    serializer = kind(out)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[serializer],
    )
    loader = DataLoader(
        FramesOfTwoSizes(),
        batch_size=1,
        collate_fn=lambda items: {
            k: (torch.stack([i[k] for i in items]) if k == "input" else [i[k] for i in items]) for k in items[0]
        },
    )
    trainer.predict(Identity(), dataloaders=loader, return_predictions=False)
    assert [f.reason.split(" but")[0] for f in serializer.failures] == ["frame 3 is 48x40 pixels"]
    assert "the video began at 32x24" in serializer.failures[0].reason
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "failures.tsv"
    ]  # no crop, no partial output
