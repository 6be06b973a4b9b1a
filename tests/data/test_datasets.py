"""Clean-folder and paired-folder datasets, and the image datamodule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from m3l.data import CleanImageDataset, GaussianNoise, JPEG, PairedDataModule, PairedImageDataset, RestorationDataModule
from m3l.data.samples import sample_dir, sample_paths


def test_samples_are_disjoint_real_photos() -> None:
    train, val = sample_paths("train"), sample_paths("val")
    assert len(train) >= 8 and len(val) >= 3
    assert not {p.name for p in train} & {p.name for p in val}
    assert sum(p.stat().st_size for p in train + val) < 4_000_000
    licences = (Path(sample_dir("train")).parent / "LICENSES.md").read_text()
    assert all(p.name in licences for p in train + val)
    with pytest.raises(ValueError, match="split"):
        sample_dir("test")


def test_train_patches_are_random_and_augmented(clean_tree: Path) -> None:
    ds = CleanImageDataset(clean_tree, GaussianNoise(sigma=25, scale=255), patch_size=32, patches_per_image=5)
    assert len(ds) == 15
    a, b = ds[0], ds[0]
    assert a["input"].shape == a["target"].shape == (3, 32, 32)
    assert not torch.equal(a["target"], b["target"])  # a new random patch each draw
    assert sorted({ds[i]["relpath"] for i in range(3)}) == ["a/b/three.jpg", "a/two.png", "one.png"]


def test_tiny_images_are_padded_to_the_patch(image_tree: Path) -> None:
    ds = CleanImageDataset(image_tree / "tiny.png", None, patch_size=16)
    assert ds[0]["input"].shape == (3, 16, 16)


def test_eval_is_deterministic_per_relpath(clean_tree: Path, tmp_path: Path) -> None:
    deg = GaussianNoise(sigma_range=[0, 50], scale=255)
    first = CleanImageDataset(clean_tree, deg, train=False)
    second = CleanImageDataset(clean_tree, deg, train=False)
    for i in range(len(first)):
        assert torch.equal(first[i]["input"], second[i]["input"])
        assert first[i]["target"].shape[-2:] == first[i]["input"].shape[-2:]
    # the seed comes from the relative path, not the folder or the order
    copy = tmp_path / "elsewhere"
    (copy / "a").mkdir(parents=True)
    Image.open(clean_tree / "a" / "two.png").save(copy / "a" / "two.png")
    moved = CleanImageDataset(copy, deg, train=False)
    assert torch.equal(
        moved[0]["input"], next(first[i] for i in range(3) if first[i]["relpath"] == "a/two.png")["input"]
    )
    other_seed = CleanImageDataset(clean_tree, deg, train=False, seed=1)
    assert not torch.equal(other_seed[0]["input"], first[0]["input"])


def test_eval_centre_crop(clean_tree: Path) -> None:
    ds = CleanImageDataset(clean_tree, None, train=False, eval_patch_size=40)
    assert all(ds[i]["input"].shape[-2:] == (40, 40) for i in range(len(ds)))


def test_bad_files_are_skipped_and_named(image_tree: Path) -> None:
    ds = CleanImageDataset(image_tree, JPEG(quality=30), train=False, channels=1)
    names = {Path(f.path).name for f in ds.failures}
    assert names == {"truncated.png", "fake.jpg"}  # notes.txt is not an image suffix: not listed
    assert len(ds) == 9 and all(ds[i]["input"].shape[0] == 1 for i in range(len(ds)))
    train = CleanImageDataset(image_tree, None, patch_size=8)
    assert {Path(f.path).name for f in train.failures} == {"fake.jpg"}  # header probe
    for i in range(len(train)):  # the truncated one fails on read and is replaced
        train[i]
    assert {Path(f.path).name for f in train.failures} == {"fake.jpg", "truncated.png"}


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data.train_dir: .*nope does not exist"):
        CleanImageDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images .* found under"):
        CleanImageDataset(tmp_path / "empty", key="data.val_dir")


def test_datamodule_on_samples_with_several_test_sets(clean_tree: Path) -> None:
    dm = RestorationDataModule(
        train_dir=sample_dir("train"),
        val_dir=sample_dir("val"),
        test_dir={"samples": sample_dir("val"), "mine": str(clean_tree)},
        degradation=GaussianNoise(sigma=15, scale=255),
        patch_size=32,
        batch_size=4,
        patches_per_image=2,
        channels=1,
    )
    assert dm.channels == 1
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (4, 1, 32, 32) and batch["meta"]["sigma"].shape == (4,)
    val = next(iter(dm.val_dataloader()))
    assert val["input"].shape[0] == 1 and isinstance(val["relpath"][0], str)
    dm.setup("test")
    loaders = dm.test_dataloader()
    assert dm.test_names == ["samples", "mine"] and len(loaders) == 2
    assert dm.failures == []


def test_whole_images_in_a_batch_say_what_to_set(clean_tree: Path) -> None:
    dm = RestorationDataModule(val_dir=str(clean_tree), val_batch_size=3)
    dm.setup("validate")
    with pytest.raises(ValueError, match="val_batch_size=1 or data.val_patch_size"):
        next(iter(dm.val_dataloader()))


def _pair(src: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    src.save(path)


@pytest.fixture(scope="module")
def gopro_and_sidd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paired")
    photo = Image.open(sample_paths("train")[1]).convert("RGB")
    for split, scenes in (("train", ("GOPR0372_07_00", "GOPR0374_11_00")), ("test", ("GOPR0384_11_00",))):
        for s, scene in enumerate(scenes):
            for i in range(2):
                crop = photo.crop((40 * s + 10 * i, 0, 40 * s + 10 * i + 64, 48))
                _pair(crop, root / "GOPRO" / split / scene / "sharp" / f"{i:06d}.png")
                _pair(crop.resize((32, 24)).resize((64, 48)), root / "GOPRO" / split / scene / "blur" / f"{i:06d}.png")
    for d, scene in enumerate(("0001_001_S6_00100_00060_3200_L", "0002_001_S6_00100_00020_3200_N")):
        crop = photo.crop((50 * d, 20, 50 * d + 40, 60))
        _pair(crop, root / "SIDD_Small_sRGB_Only" / "Data" / scene / "GT_SRGB_010.PNG")
        _pair(
            crop.point(lambda v: min(v + 9, 255)), root / "SIDD_Small_sRGB_Only" / "Data" / scene / "NOISY_SRGB_010.PNG"
        )
    return root


def test_gopro_layout(gopro_and_sidd: Path) -> None:
    ds = PairedImageDataset(gopro_and_sidd / "GOPRO" / "train", input_token="blur", target_token="sharp", patch_size=32)
    assert len(ds) == 4 and ds.failures == []
    item = ds[0]
    assert item["input"].shape == item["target"].shape == (3, 32, 32)
    assert item["relpath"].split("/")[1] == "blur"
    ev = PairedImageDataset(gopro_and_sidd / "GOPRO" / "test", input_token="blur", target_token="sharp", train=False)
    assert ev[0]["input"].shape == (3, 48, 64) and not torch.equal(ev[0]["input"], ev[0]["target"])


def test_sidd_layout_and_missing_target(gopro_and_sidd: Path, tmp_path: Path) -> None:
    data = gopro_and_sidd / "SIDD_Small_sRGB_Only" / "Data"
    ds = PairedImageDataset(data, input_token="NOISY_", target_token="GT_", train=False)
    assert len(ds) == 2
    item = ds[0]
    assert torch.allclose(item["input"], (item["target"] + 9 / 255).clamp(max=1), atol=1e-6)
    Image.open(data / "0001_001_S6_00100_00060_3200_L" / "NOISY_SRGB_010.PNG").save(tmp_path / "NOISY_x.png")
    Image.open(data / "0001_001_S6_00100_00060_3200_L" / "NOISY_SRGB_010.PNG").save(tmp_path / "NOISY_y.png")
    Image.open(data / "0001_001_S6_00100_00060_3200_L" / "GT_SRGB_010.PNG").save(tmp_path / "GT_x.png")
    partial = PairedImageDataset(tmp_path, input_token="NOISY_", target_token="GT_", train=False)
    assert len(partial) == 1 and [Path(f.path).name for f in partial.failures] == ["NOISY_y.png"]
    assert "no matching target" in partial.failures[0].reason


def test_paired_datamodule(gopro_and_sidd: Path) -> None:
    dm = PairedDataModule(
        train_dir=str(gopro_and_sidd / "GOPRO" / "train"),
        test_dir=str(gopro_and_sidd / "GOPRO" / "test"),
        input_token="blur",
        target_token="sharp",
        patch_size=24,
        batch_size=2,
    )
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["input"].shape == (2, 3, 24, 24)
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))["target"].shape == (1, 3, 48, 64)


def test_symlink_loop_is_walked_once(tmp_path: Path) -> None:
    import time

    from m3l.data.datasets import list_files, list_images

    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "a.png")
    Image.new("RGB", (8, 8)).save(root / "sub" / "b.png")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # photos/sub/loop -> photos
    (root / "self").symlink_to(".", target_is_directory=True)  # photos/self -> photos
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "c.png")
    (root / "linked").symlink_to(outside, target_is_directory=True)  # a real linked folder is followed
    start = time.perf_counter()
    names = [p.relative_to(root).as_posix() for p in list_files(root)]
    assert time.perf_counter() - start < 1.0
    assert sorted(names) == ["a.png", "linked/c.png", "sub/b.png"]
    assert len(list_images(root)) == 3


def test_training_images_over_the_pixel_limit_are_skipped_and_named(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "train"
    root.mkdir()
    Image.new("RGB", (40, 40)).save(root / "big.png")
    Image.new("RGB", (10, 10)).save(root / "small.png")
    monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", "1000")
    data = CleanImageDataset(root, train=True, patch_size=8)
    assert len(data.store) == 1
    assert [f.path for f in data.failures] == [str(root / "big.png")]
    assert "40x40 = 1,600 pixels is over the limit of 1,000" in data.failures[0].reason


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"batch_size": -1}, "data.batch_size must be an integer >= 1, got -1"),
        ({"batch_size": 2.5}, "data.batch_size must be an integer >= 1, got 2.5"),
        ({"val_batch_size": 0}, "data.val_batch_size"),
        ({"num_workers": -2}, "data.num_workers must be an integer >= 0"),
        ({"patch_size": "abc"}, "data.patch_size"),
        ({"patches_per_image": 0}, "data.patches_per_image"),
        ({"val_patch_size": -8}, "data.val_patch_size must be an integer >= 1 or null"),
        ({"channels": 2}, "data.channels must be 1 (gray) or 3 (RGB)"),
    ],
)
def test_datamodule_options_out_of_range_name_the_key(options, expected):
    from m3l.data.datamodules import RestorationDataModule
    from m3l.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        RestorationDataModule(**options)
    assert expected in str(caught.value)
    assert isinstance(caught.value, ValueError)  # callers catching ValueError still do
