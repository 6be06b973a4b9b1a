"""The three forms of ``predict_step`` output the serializers write (the seed's bare tensor and
``(images, paths)`` tuple beside m3l's dict), through a real ``Trainer.predict``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from m3l.data import ImageSerializer
from m3l.errors import PredictionFormatError


def _photos(count: int, size: int = 24) -> torch.Tensor:
    """``count`` crops of a real photo (scikit-image's astronaut), (N, 3, size, size) in [0, 1]."""
    import skimage.data

    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    return torch.stack([photo[:, 40 * i : 40 * i + size, 100 : 100 + size] for i in range(count)])


class Returns(L.LightningModule):
    """Returns what ``form`` makes of the batch (a plain ``TensorDataset`` batch: ``[x]``)."""

    def __init__(self, form) -> None:
        super().__init__()
        self.form = form

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self.form(batch[0], batch_idx)


def _predict(form, out: Path, images: torch.Tensor, batch_size: int = 2, **options) -> ImageSerializer:
    serializer = ImageSerializer(out, **options)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[serializer],
    )
    loader = DataLoader(TensorDataset(images), batch_size=batch_size)
    trainer.predict(Returns(form), dataloaders=loader, return_predictions=False)
    return serializer


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float32) / 255


def test_bare_tensor_without_file_names_is_numbered(tmp_path: Path) -> None:
    images = _photos(5)
    serializer = _predict(lambda x, i: x, tmp_path / "out", images)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"{i:05d}.png" for i in range(5)] and not serializer.failures
    for i in range(5):  # each file holds its own sample (numbered by dataset index)
        expected = images[i].permute(1, 2, 0).numpy()
        assert np.abs(_read(tmp_path / "out" / f"{i:05d}.png") - expected).max() <= 0.5 / 255 + 1e-6


def test_numbered_files_take_the_output_format(tmp_path: Path) -> None:
    _predict(lambda x, i: x, tmp_path / "out", _photos(2), format="tif")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.tif", "00001.tif"]


def test_tuple_of_images_and_paths_writes_at_the_paths(tmp_path: Path) -> None:
    images = _photos(4)

    def form(x, batch_idx):
        return x, [f"scene_{batch_idx}/frame_{j}.png" for j in range(len(x))]

    serializer = _predict(form, tmp_path / "out", images)
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["scene_0/frame_0.png", "scene_0/frame_1.png", "scene_1/frame_0.png", "scene_1/frame_1.png"]
    assert serializer.written == 4
    expected = images[3].permute(1, 2, 0).numpy()
    assert np.abs(_read(tmp_path / "out" / "scene_1" / "frame_1.png") - expected).max() <= 0.5 / 255 + 1e-6


def test_tuple_paths_may_not_leave_the_output_folder(tmp_path: Path) -> None:
    serializer = _predict(lambda x, i: (x, ["../escape.png", "/tmp/abs.png"][: len(x)]), tmp_path / "out", _photos(2))
    assert not (tmp_path / "escape.png").exists() and not any((tmp_path / "out").rglob("*.png"))
    assert len(serializer.failures) == 2 and all("leaves serializer.root_dir" in f.reason for f in serializer.failures)
    assert (tmp_path / "out" / "failures.tsv").is_file()


def test_dict_form_with_metadata_from_the_prediction(tmp_path: Path) -> None:
    _predict(
        lambda x, i: {"output": x, "relpath": [f"{i}_{j}.jpg" for j in range(len(x))]}, tmp_path / "out", _photos(2)
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0_0.png", "0_1.png"]


@pytest.mark.parametrize(
    ("form", "found"),
    [
        (lambda x, i: x[0], "a tensor of shape (3, 24, 24)"),
        (lambda x, i: (x, ["only_one.png"]), "the paths must be 2 strings"),
        (lambda x, i: {"restored": x}, "without 'output'"),
        (lambda x, i: "done", "a str"),
        (lambda x, i: [x, x, x], "a list of 3"),
    ],
)
def test_anything_else_is_one_error_naming_the_accepted_forms(tmp_path: Path, form, found: str) -> None:
    with pytest.raises(PredictionFormatError) as info:
        _predict(form, tmp_path / "out", _photos(2))
    message = str(info.value)
    assert found in message
    assert "(B, C, H, W) tensor" in message and "tuple (images, paths)" in message and "'output'" in message


DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from m3l.data import ImageSerializer

    class Bare(L.LightningModule):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return batch[0]

    out = Path(sys.argv[1])
    images = torch.arange(7, dtype=torch.float32).div(10).view(7, 1, 1, 1).expand(7, 1, 8, 8).contiguous()
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, callbacks=[ImageSerializer(out)])
    trainer.predict(Bare(), dataloaders=DataLoader(TensorDataset(images), batch_size=2), return_predictions=False)
    """
)


@pytest.mark.slow
def test_numbering_is_safe_under_ddp(tmp_path: Path) -> None:
    """Two processes: every sample is written once, under its own dataset index."""
    script = tmp_path / "bare_ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in range(7)]
    for i in range(7):  # sample i is the constant i/10
        assert abs(float(_read(out / f"{i:05d}.png").mean()) - i / 10) < 1 / 255
