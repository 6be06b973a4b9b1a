"""Hardening of export and the exported-model runtime, as a careless or hostile user meets them
(issue 26 items 13, 17, 19; issue 27 items 5, 13, 16): real files, real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.samples import sample_paths
from m3l.deploy.export import export_model
from m3l.models.nets import DnCNN, FFDNet
from m3l.models.restoration import RestorationModule
from tests.conftest import REPO

RUNTIME = [sys.executable, "-m", "m3l.deploy.runtime"]


def run_runtime(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p),
    }
    return subprocess.run([*RUNTIME, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small DnCNN exported to ONNX, with its metadata (sha256 included)."""
    torch.manual_seed(0)
    module = RestorationModule(DnCNN(in_channels=3, depth=3, features=8), residual=True).eval()
    return export_model(
        module, tmp_path_factory.mktemp("export") / "tiny.onnx", fmt="onnx", name="tiny", sizes=[(24, 30)]
    )


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "inputs"
    root.mkdir()
    for k, path in enumerate(sample_paths("val")[:2]):
        Image.open(path).convert("RGB").resize((96, 72)).save(root / f"p{k}.png")
    return root


def copy_artifact(
    artifact: Path, folder: Path, data: bytes | None = None, meta: object = None, drop_sha: bool = False
) -> Path:
    """``artifact`` and its metadata copied to ``folder``, the artifact's bytes and the metadata
    replaced where given."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / artifact.name
    target.write_bytes(artifact.read_bytes() if data is None else data)
    if meta is None:
        meta = json.loads(artifact.with_name(artifact.name + ".json").read_text())
        if drop_sha:
            meta.pop("sha256")
    target.with_name(target.name + ".json").write_text(json.dumps(meta))
    return target


def assert_one_line_refusal(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = lines(done.stderr)
    assert line.startswith("m3l.deploy.runtime: error: ")
    for needle in needles:
        assert needle in line, line


# ---------------------------------------------------------------------------- issue 26 item 13


@pytest.mark.parametrize("damage", ["random", "truncated"])
@pytest.mark.parametrize("with_sha", [True, False])
def test_a_damaged_artifact_is_one_line_and_exit_2(
    artifact: Path, photos: Path, tmp_path: Path, damage: str, with_sha: bool
) -> None:
    """Random bytes or the first half of a real export: refused in one line before any work;
    the sha256 the metadata records names it as changed, without one the loader's failure does."""
    data = os.urandom(4096) if damage == "random" else artifact.read_bytes()[: artifact.stat().st_size // 2]
    bad = copy_artifact(artifact, tmp_path / "bad", data, drop_sha=not with_sha)
    out = tmp_path / "out"
    done = run_runtime(bad, photos, out)
    assert_one_line_refusal(done, str(bad), "Export it again")
    assert ("sha256" in done.stderr) == with_sha and ("not a loadable ONNX model" in done.stderr) != with_sha
    assert not out.exists()


@pytest.mark.parametrize(
    ("meta", "needles"),
    [
        ([1, 2, 3], ["holds a JSON list, not the object of metadata"]),
        ({"format": "onnx", "channels": "abc"}, ['"channels" must be 1 or 3', '"abc"']),
        ({"format": "onnx", "channels": 3, "pad_multiple": 0}, ['"pad_multiple" must be a whole number >= 1']),
        ({"format": "onnx", "outputs": "output"}, ['"outputs" must be a non-empty list of names']),
        ({"channels": 3}, ['no "format" key']),
    ],
)
def test_bad_metadata_is_one_line_naming_the_key(
    artifact: Path, photos: Path, tmp_path: Path, meta: object, needles: list[str]
) -> None:
    bad = copy_artifact(artifact, tmp_path / "bad", meta=meta)
    done = run_runtime(bad, photos, tmp_path / "out")
    assert_one_line_refusal(done, "tiny.onnx.json", *needles)
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_is_refused_before_any_work(artifact: Path, photos: Path, tmp_path: Path) -> None:
    """An output that is an existing file, or lies under one: refused before the net runs on
    any input (no per-file lines, nothing written), whoever runs it (root included)."""
    blocker = tmp_path / "taken"
    blocker.write_text("a file of the user's\n")
    for out in (blocker, blocker / "sub"):
        done = run_runtime(artifact, photos, out)
        assert_one_line_refusal(done, str(out))
        assert "p0.png" not in done.stderr and blocker.read_text() == "a file of the user's\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_before_any_work(artifact: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    try:
        done = run_runtime(artifact, photos, out)
    finally:
        out.chmod(0o755)
    assert_one_line_refusal(done, str(out), "cannot be written")
    assert not list(out.iterdir())


def test_a_sound_artifact_still_runs(artifact: Path, photos: Path, tmp_path: Path) -> None:
    """The checks pass what the export writes (and its copy elsewhere)."""
    copied = copy_artifact(artifact, tmp_path / "elsewhere")
    done = run_runtime(copied, photos, tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]


# ---------------------------------------------------------------------------- issue 26 item 19, issue 27 item 13


def test_each_failure_and_a_bombs_path_are_printed_once(
    artifact: Path, photos: Path, tmp_path: Path, huge_png: Path
) -> None:
    shutil.copy(huge_png, photos / "bomb.png")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    done = run_runtime(artifact, photos, out)
    assert done.returncode == 1, done.stderr[-3000:]
    for name in ("bomb.png", "broken.png"):
        assert done.stderr.count(str(photos / name)) == 1, done.stderr
    assert done.stderr.count("14000x14000") == 1 and "2 input(s) failed" in done.stderr
    listed = (out / "failures.tsv").read_text()
    assert str(photos / "bomb.png") in listed and str(photos / "broken.png") in listed
    assert (out / "p0.png").is_file() and (out / "p1.png").is_file()


@pytest.mark.slow
def test_ffdnet_export_without_sigma_estimates_it_like_correct(photos: Path, tmp_path: Path) -> None:
    """Without --sigma the runtime estimates each image's noise level as ``correct`` does
    (RestorationModule.restore estimates it with m3l.models.noise_level) and writes what the
    eager model writes, instead of failing on every file."""
    torch.manual_seed(0)
    module = RestorationModule(FFDNet(in_channels=3, depth=3, features=8)).eval()
    ffdnet = export_model(module, tmp_path / "ffdnet.onnx", fmt="onnx", name="ffdnet", sizes=[(24, 30)])
    rng = np.random.default_rng(0)
    for path in photos.iterdir():  # real photos with real noise: different levels per file
        clean = np.asarray(Image.open(path), dtype=np.float32) / 255
        noisy = np.clip(clean + rng.normal(0, 0.04 if path.name == "p0.png" else 0.12, clean.shape), 0, 1)
        Image.fromarray(np.round(noisy * 255).astype(np.uint8)).save(path)
    out = tmp_path / "out"
    done = run_runtime(ffdnet, photos, out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(estimated)" in done.stderr and "--sigma" not in done.stderr
    for path in sorted(photos.iterdir()):
        x = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            expected = np.round(module.restore(x)[0].permute(1, 2, 0).numpy() * 255)
        got = np.asarray(Image.open(out / path.name), dtype=np.float32)
        assert np.abs(got - expected).max() <= 1, path.name


# ---------------------------------------------------------------------------- issue 27 item 5


CLASSIFIER = '''"""A user's module whose forward is no image-to-image map: a classifier."""
import lightning.pytorch as pl
import torch
from torch import nn


class MyClassifier(pl.LightningModule):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
'''


def _user_checkpoint(tmp_path: Path, package_root: Path, module: str, cls: str, **kwargs: object) -> Path:
    """The state dict of the user's class ``module.cls`` (imported from ``package_root``, as the
    user's own code), saved as a checkpoint."""
    sys.path.insert(0, str(package_root))
    try:
        import importlib

        net = getattr(importlib.import_module(module), cls)(**kwargs)
    finally:
        sys.path.remove(str(package_root))
    path = tmp_path / f"{cls}.ckpt"
    torch.save({"state_dict": net.state_dict()}, path)
    return path


@pytest.mark.slow
def test_the_users_own_lightning_module_exports_in_every_format_and_the_runtime_runs_it(
    user: tuple[dict[str, str], Path, list[str]],
    workdir: Path,
    tmp_path: Path,
    photos: Path,
) -> None:
    """The M3L README's "Optimizing Your Own Model" package (a plain LightningModule, no m3l
    base class): ``export`` writes ONNX, .pt2 and TorchScript, each parity-checked, and the
    torch-free runtime writes what the module's own forward gives."""
    from tests.conftest import OWN_CODE, run_cli

    env, _, common = user
    torch.manual_seed(0)
    checkpoint = _user_checkpoint(tmp_path, OWN_CODE, "my_library.net", "MyRestorationNetwork", n_layers=5, width=32)
    exports = tmp_path / "exports"
    for fmt, suffix in (("onnx", ".onnx"), ("pt2", ".pt2"), ("torchscript", ".ts")):
        done = run_cli(
            "export",
            *common,
            f"checkpoint={checkpoint}",
            f"format={fmt}",
            f"output={exports / ('mine' + suffix)}",
            cwd=workdir,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        meta = json.loads((exports / f"mine{suffix}.json").read_text())
        assert meta["net"] == "MyRestorationNetwork" and meta["kind"] == "image" and meta["channels"] == 3
        assert meta["parity"]["max_abs_diff"] <= 1e-4
    out = tmp_path / "out"
    ran = run_runtime(exports / "mine.onnx", photos, out)
    assert ran.returncode == 0, ran.stderr[-3000:]
    sys.path.insert(0, str(OWN_CODE))
    try:
        from my_library.net import MyRestorationNetwork
    finally:
        sys.path.remove(str(OWN_CODE))
    module = MyRestorationNetwork(n_layers=5, width=32).eval()
    module.load_state_dict(torch.load(checkpoint)["state_dict"])
    for path in sorted(photos.iterdir()):
        x = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            expected = np.round(module(x).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255)
        assert np.abs(np.asarray(Image.open(out / path.name), dtype=np.float32) - expected).max() <= 1


@pytest.mark.slow
def test_a_user_module_whose_forward_is_no_image_map_is_told_what_export_needs(
    user: tuple[dict[str, str], Path, list[str]],
    workdir: Path,
    tmp_path: Path,
) -> None:
    from tests.conftest import run_cli

    env, configs, common = user
    package = tmp_path / "classifier_code"
    (package / "my_classifier").mkdir(parents=True)
    (package / "my_classifier" / "__init__.py").write_text("")
    (package / "my_classifier" / "net.py").write_text(CLASSIFIER)
    env = {**env, "PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], str(package)])}
    (configs / "net" / "my_classifier.yaml").write_text("_target_: my_classifier.net.MyClassifier\nclasses: 10\n")
    model = (configs / "model" / "my_model.yaml").read_text().replace("/net: my_net", "/net: my_classifier")
    (configs / "model" / "my_classifier_model.yaml").write_text(model)
    checkpoint = _user_checkpoint(tmp_path, package, "my_classifier.net", "MyClassifier")
    out = tmp_path / "exports" / "cls.onnx"
    done = run_cli(
        "export",
        "model=my_classifier_model",
        *common[1:],
        f"checkpoint={checkpoint}",
        f"output={out}",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "m3l exports a model whose forward maps an image batch to an image batch" in done.stderr
    assert "MyClassifier.forward does not fit" in done.stderr and "returned shape (1, 10)" in done.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------- issue 27 item 13


@pytest.fixture
def demo_weights(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    from m3l import compose
    from m3l.engine.experiment import Experiment

    net = Experiment(compose("demo", [f"paths.runs_dir={tmp_path}/api_runs"])).net
    path = tmp_path / "demo.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.mark.slow
def test_export_without_the_export_extra_names_it(demo_weights: Path, workdir: Path, tmp_path: Path) -> None:
    """Without onnxscript (the export extra), format=onnx says which extra to install instead of
    "No module named 'onnxscript'" / "Try another format". The package is made unimportable in
    the subprocess (``sys.modules[name] = None``, what Python does for a module that is absent)."""
    from tests.conftest import cli_env

    env = cli_env(tmp_path)
    out = tmp_path / "exports" / "demo.onnx"
    args = ["model=demo", f"checkpoint={demo_weights}", "format=onnx", f"output={out}"]
    code = (
        "import sys; sys.modules['onnxscript'] = None; sys.argv = ['m3l-export', *sys.argv[1:]]; "
        "from m3l.run.export import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert 'pip install "m3l[export]"' in done.stderr and 'pip install -e ".[export]"' in done.stderr
    assert "onnxscript" in done.stderr and "Traceback" not in done.stderr and "Try another format" not in done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_export_keeps_the_onnx_tools_log_lines_off_the_terminal(
    demo_weights: Path, workdir: Path, tmp_path: Path
) -> None:
    """The ONNX exporter's passes log about a dozen lines ("Removed 67 unused nodes"...): they go
    to the run's log file only; the terminal keeps m3l's own lines."""
    from tests.conftest import cli_env, run_cli

    env = cli_env(tmp_path)
    out = tmp_path / "exports" / "demo.onnx"
    done = run_cli(
        "export", "model=demo", f"checkpoint={demo_weights}", "format=onnx", f"output={out}", cwd=workdir, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    terminal = done.stdout + done.stderr
    for noise in ("onnx_ir", "onnxscript", "unused nodes", "constant folding"):
        assert noise not in terminal, terminal
    assert "Exported demo (onnx)" in terminal
    (log_file,) = Path(env["M3L_RUNS_DIR"]).rglob("export.log")
    assert "onnx_ir" in log_file.read_text() or "onnxscript" in log_file.read_text()
    assert len(lines(terminal)) <= 10, terminal  # the run header, the weights, the result


# ---------------------------------------------------------------------------- issue 26 item 17 (the command)


@pytest.mark.slow
def test_correct_exports_a_damaged_cached_onnx_again(
    demo_checkpoint: Path, photos: Path, workdir: Path, tmp_path: Path
) -> None:
    """`correct backend=onnx` after the cached export beside the checkpoint was replaced by random
    bytes: exported again once, with a warning naming it, and ONNX Runtime runs the net (before:
    every run fell back to eager PyTorch)."""
    from tests.conftest import cli_env, run_cli

    env = cli_env(tmp_path)
    common = [
        "model=demo",
        f"checkpoint={demo_checkpoint}",
        f"data.correct_dir={photos}",
        "backend=onnx",
        "precision=fp32",
    ]
    first = run_cli("correct", *common, f"serializer.root_dir={tmp_path / 'first'}", cwd=workdir, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    (export,) = demo_checkpoint.parent.glob(f"{demo_checkpoint.name}.*.onnx")
    export.write_bytes(os.urandom(4096))
    again = run_cli("correct", *common, f"serializer.root_dir={tmp_path / 'again'}", cwd=workdir, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert log.count("exporting it again") == 1 and str(export) in log, log[-3000:]
    assert "ONNX Runtime fp32 runs the net" in log, log[-3000:]
    for name in ("p0.png", "p1.png"):
        a = np.asarray(Image.open(tmp_path / "first" / name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "again" / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1
