"""The seed README's "Optimizing Your Own Model" correct command, as written there.

The user's data config is the README's template verbatim (no ``correct_dir`` key), the model
config too, and the command sets ``data.correct_dir=...`` without a ``+``. The user's
``predict_step`` returns the seed's ``(images, paths)`` tuple.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.slow

USER_CODE = textwrap.dedent(
    '''
    from pathlib import Path

    import lightning.pytorch as pl
    import numpy as np
    import torch
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader, Dataset


    class MyRestorationNetwork(pl.LightningModule):
        def __init__(self, n_layers, width, epsilon):
            super().__init__()
            layers = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
            for _ in range(n_layers - 2):
                layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
            self.body = nn.Sequential(*layers, nn.Conv2d(width, 3, 3, padding=1))
            self.epsilon = epsilon

        def forward(self, x):
            return x - self.body(x)

        def predict_step(self, batch, batch_idx):
            images, paths = batch
            return self(images).clamp(0, 1), paths


    class _Files(Dataset):
        def __init__(self, root):
            self.root = Path(root)
            self.files = [self.root] if self.root.is_file() else sorted(self.root.rglob("*.png"))

        def __len__(self):
            return len(self.files)

        def __getitem__(self, i):
            path = self.files[i]
            image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255)
            name = path.name if self.root.is_file() else path.relative_to(self.root).as_posix()
            return image.permute(2, 0, 1), name


    class MyDataset(pl.LightningDataModule):
        def __init__(self, root_dir, train_batch_size, num_workers, correct_dir=None):
            super().__init__()
            self.root_dir, self.batch_size, self.num_workers = root_dir, train_batch_size, num_workers
            self.correct_dir = correct_dir

        def predict_dataloader(self):
            return DataLoader(_Files(self.correct_dir), batch_size=1, num_workers=0)


    class TrainOnlyDataset(pl.LightningDataModule):
        """A datamodule for training and evaluation only: no correct_dir."""

        def __init__(self, root_dir, train_batch_size, num_workers):
            super().__init__()
            self.root_dir = root_dir
    '''
)

# the README's templates, verbatim but for the names of the user's files
DATA_TEMPLATE = """\
_target_: my_library.my_package.MyDataset
root_dir: /data/someplace
train_batch_size: 32
num_workers: 1
"""
NET_TEMPLATE = """\
_target_: my_library.my_package.MyRestorationNetwork
n_layers: 10
width: 50
epsilon: 0.5
"""
MODEL_TEMPLATE = """\
# @package _global_
defaults:
  - /data: my_dataset  # whatever you named the yaml file for the dataset (or one of the built-ins)
  - /net: my_net  # whatever you named the yaml file for the network
  - override /serializer: image_serializer  # Required for correcting images after training/evaluation

trainer:
  max_epochs: 200  # Override any parameters for the pytorch lightning `trainer` here

name: my_network  # name of your model (used for logging)
"""


@pytest.fixture
def seed_user(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The user's package, ``~/.config/m3l`` with the README's configs, and a checkpoint."""
    package = tmp_path / "code" / "my_library"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "my_package.py").write_text(USER_CODE)
    path = os.pathsep.join(p for p in (str(tmp_path / "code"), os.environ.get("PYTHONPATH", "")) if p)
    env = cli_env(tmp_path, PYTHONPATH=path)
    configs = Path(env["XDG_CONFIG_HOME"]) / "m3l"
    for group, text in {"data": DATA_TEMPLATE, "net": NET_TEMPLATE, "model": MODEL_TEMPLATE}.items():
        (configs / group).mkdir(parents=True)
        (
            configs
            / group
            / ("my_model.yaml" if group == "model" else f"my_{'dataset' if group == 'data' else 'net'}.yaml")
        ).write_text(text)
    (configs / "data" / "train_only.yaml").write_text(DATA_TEMPLATE.replace("MyDataset", "TrainOnlyDataset"))

    spec = importlib.util.spec_from_file_location("seed_user_package", package / "my_package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = module.MyRestorationNetwork(n_layers=10, width=50, epsilon=0.5)
    checkpoint = tmp_path / "my_network.ckpt"
    torch.save({"state_dict": net.state_dict()}, checkpoint)
    return env, checkpoint


def _photos(root: Path) -> dict[str, tuple[int, int]]:
    import skimage.data

    sizes = {"astronaut.png": (40, 32), "nested/coffee.png": (29, 37)}
    for name, size in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skimage.data, Path(name).stem)()).resize(size).save(root / name)
    return sizes


def test_readme_correct_command_with_the_template_data_config(seed_user, tmp_path: Path) -> None:
    env, checkpoint = seed_user
    inputs, out = tmp_path / "to_correct", tmp_path / "corrected"
    sizes = _photos(inputs)
    result = run_cli(
        "correct",
        "model=my_model",
        f"checkpoint={checkpoint}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(sizes)
    for name, size in sizes.items():
        assert Image.open(out / name).size == size
    # what was written is the net's output on that input, not a copy
    assert (
        np.abs(
            np.asarray(Image.open(out / "astronaut.png"), dtype=float)
            - np.asarray(Image.open(inputs / "astronaut.png"), dtype=float)
        ).mean()
        > 1
    )


def test_readme_correct_command_on_a_single_image(seed_user, tmp_path: Path) -> None:
    env, checkpoint = seed_user
    inputs, out = tmp_path / "to_correct", tmp_path / "corrected"
    _photos(inputs)
    result = run_cli(
        "correct",
        "model=my_model",
        f"checkpoint={checkpoint}",
        f"data.correct_dir={inputs / 'nested' / 'coffee.png'}",
        f"serializer.root_dir={out}",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["coffee.png"]


def test_a_datamodule_without_correct_dir_is_named(seed_user, tmp_path: Path) -> None:
    env, checkpoint = seed_user
    inputs = tmp_path / "to_correct"
    _photos(inputs)
    result = run_cli(
        "correct",
        "model=my_model",
        "data=train_only",
        f"checkpoint={checkpoint}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={tmp_path / 'corrected'}",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("m3l: error:")]
    assert error and "data/train_only.yaml" in error[0] and "TrainOnlyDataset" in error[0]
    assert "takes no `correct_dir` argument" in error[0] and "predict_dataloader" in error[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "corrected").exists()
