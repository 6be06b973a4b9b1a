"""m3l.engine.instantiation: a config's target that raises an m3l error keeps that error (its type and
attributes), with the key and the config file appended to its message."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from m3l.errors import DataNotFoundError, MediaReadError
from m3l.engine.instantiation import instantiate_key
from m3l.mtl.errors import MissingCriterionError


def test_an_m3l_error_with_its_own_constructor_keeps_its_type_and_gains_the_key() -> None:
    cfg = OmegaConf.create(
        {
            "task": {
                "_target_": "m3l.mtl.tasks.MultiHeadTask",
                "name": "scene",
                "heads": {"depth": {"_target_": "torch.nn.Identity"}},
                "criteria": {},
            }
        }
    )
    with pytest.raises(
        MissingCriterionError,
        match=r"(?s)task 'scene': heads \['depth'\] have no criterion.*\(building 'task' from key 'task'\)",
    ):
        instantiate_key(cfg, "task")


def test_a_data_error_keeps_its_builtin_and_its_message(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {"data": {"_target_": "m3l.data.datasets.list_images", "root": str(tmp_path / "nope"), "key": "data.root"}}
    )
    with pytest.raises(
        DataNotFoundError, match=r"data.root: .*nope does not exist.*\(building 'data' from key 'data'\)"
    ) as caught:
        instantiate_key(cfg, "data")
    assert isinstance(caught.value, FileNotFoundError)


def test_an_unreadable_file_keeps_its_path_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    cfg = OmegaConf.create({"image": {"_target_": "m3l.data.io.read_image", "path": str(bad)}})
    with pytest.raises(MediaReadError, match=r"x.png: .*\(building 'image' from key 'image'\)") as caught:
        instantiate_key(cfg, "image")
    assert caught.value.path == str(bad) and caught.value.reason
