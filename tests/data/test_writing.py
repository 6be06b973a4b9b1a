"""The writer thread of the serializers: order, bounded queue, errors handed back."""

from __future__ import annotations

import copy
import threading
import time

import pytest

from m3l.data.writing import WriterThread


def test_jobs_run_in_order_off_the_caller_thread():
    writer, seen = WriterThread(depth=2), []
    for i in range(20):
        writer.submit(lambda i: seen.append((i, threading.current_thread().name)), i)
    writer.flush()
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"m3l-writer"}
    writer.close()
    assert writer._thread is None


def test_the_queue_is_bounded():
    writer, release, started = WriterThread(depth=1), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)

    writer.submit(slow)
    started.wait(5)
    writer.submit(lambda: None)  # waits in the queue
    blocked = threading.Thread(target=writer.submit, args=(lambda: None,))
    blocked.start()
    time.sleep(0.2)
    assert blocked.is_alive()  # a third job waits for room: memory stays bounded
    release.set()
    blocked.join(5)
    assert not blocked.is_alive()
    writer.close()


def test_an_unexpected_error_comes_back_to_the_caller_and_drops_the_rest():
    writer, seen = WriterThread(depth=4), []

    def boom() -> None:
        raise RuntimeError("disk on fire")

    writer.submit(boom)
    writer.submit(seen.append, 1)
    with pytest.raises(RuntimeError, match="disk on fire"):
        writer.flush()
    assert seen == []  # queued after the failure: dropped, so the caller lists it as not corrected
    writer.submit(seen.append, 2)  # the error was handed over once; the writer goes on
    writer.close()
    assert seen == [2]


def test_depth_zero_writes_in_the_caller():
    writer, seen = WriterThread(depth=0), []
    writer.submit(lambda: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name]


def test_a_copy_starts_idle():
    writer = WriterThread(depth=3)
    writer.submit(lambda: None)
    twin = copy.deepcopy(writer)
    assert twin.depth == 3 and twin._thread is None
    writer.close()


def test_an_output_folder_serves_one_run_at_a_time(tmp_path):
    """The folder lock of a correction (issue 26 item 17): a second serializer into a folder
    another one holds is refused at setup, naming the holder; after release (or a second
    predict of the same serializer) the folder is free again, and no lock file is left."""
    import os

    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from m3l.data import ImageSerializer
    from m3l.data.output_folder import LOCK_FILENAME, lock_output_folder
    from m3l.errors import ConfigError

    class Same(L.LightningModule):
        def predict_step(self, batch, batch_idx):
            return batch[0]

    def predict(serializer):
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            callbacks=[serializer],
        )
        trainer.predict(Same(), dataloaders=DataLoader(TensorDataset(torch.rand(2, 3, 8, 8))), return_predictions=False)

    out = tmp_path / "out"
    out.mkdir()
    held = lock_output_folder(out)
    with pytest.raises(ConfigError, match=rf"another correction \(pid {os.getpid()} on .*\) is writing into {out}"):
        predict(ImageSerializer(out))
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILENAME]  # nothing written, nothing removed
    held.release()
    serializer = ImageSerializer(out, overwrite=True)
    predict(serializer)
    predict(serializer)  # the same serializer again: its own lock was released at the end
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png"]
