"""Under DDP (2 CPU processes, gloo) every corrected image is written exactly once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import GOOD_IMAGES

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import lightning as L
    from m3l.data import ImageSerializer, RestorationDataModule

    class Identity(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.dummy = __import__("torch").nn.Parameter(__import__("torch").zeros(()))
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return batch["input"]

    src, out = sys.argv[1], Path(sys.argv[2])
    serializer = ImageSerializer(out)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False,
                        enable_progress_bar=False, enable_checkpointing=False, callbacks=[serializer])
    trainer.predict(Identity(), datamodule=RestorationDataModule(correct_dir=src), return_predictions=False)
    (out.parent / f"written.{trainer.global_rank}").write_text(str(serializer.written))
    """
)


@pytest.mark.slow
def test_each_item_written_once_under_ddp(image_tree: Path, tmp_path: Path) -> None:
    script = tmp_path / "predict_ddp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(script), str(image_tree), str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = [int((tmp_path / f"written.{rank}").read_text()) for rank in (0, 1)]
    assert sum(counts) == len(GOOD_IMAGES) and all(c > 0 for c in counts)
    images = [p for p in out.rglob("*") if p.is_file() and p.name != "failures.tsv"]
    assert len(images) == len(GOOD_IMAGES) and not any(p.name.endswith(".part") for p in out.rglob("*"))
    assert len((out / "failures.tsv").read_text().splitlines()) == 1 + 3  # header + the 3 bad inputs, once
