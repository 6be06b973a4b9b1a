"""Image datasets for training and evaluation: clean folders with on-the-fly degradation, and
paired folders (input/target matched by relative path).

Samples follow docs/contracts.md: ``{"input", "target", "meta", "relpath"}``. Training draws
random patches (flips, rot90) with the global torch RNG (so ``seed_everything`` and worker
seeding apply); evaluation is deterministic per image, seeded from a stable hash of the
file's relative path, so metrics compare across runs and machines.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from m3l.data.degradations import Degradation, Identity, Meta
from m3l.data.failures import Failure, record_failure
from m3l.data.io import ImageTooLargeError, is_image_file, open_image_checked, read_image
from m3l.deploy.runtime import walk_files
from m3l.errors import ConfigError, DataNotFoundError, MediaReadError

log = logging.getLogger(__name__)

PathsLike = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def as_path_list(paths: PathsLike | None) -> list[Path]:
    """A path or a list of paths as a list of :class:`Path` (None gives an empty list)."""
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths).expanduser()]
    return [Path(p).expanduser() for p in paths]


def list_files(root: Path) -> list[Path]:
    """All visible files under ``root`` (recursive, sorted; hidden files and folders skipped;
    symlinked folders followed, each real folder once, so symlink loops end): the runtime's
    :func:`m3l.deploy.runtime.walk_files`, one rule for ``correct`` and the runtime."""
    return walk_files(root)


def list_images(root: str | os.PathLike[str], key: str = "data") -> list[Path]:
    """Image files under a folder (recursive) or the file itself; clear errors otherwise."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataNotFoundError(f"{key}: {root} does not exist; expected a folder of images (set {key}=PATH)")
    if root.is_file():
        return [root] if is_image_file(root) else []
    images = [f for f in list_files(root) if is_image_file(f)]
    if not images:
        raise DataNotFoundError(
            f"{key}: no images (png, jpg, bmp, tif, webp) found under {root}; point {key} at a folder of images"
        )
    return images


def relative_path(path: Path, root: Path) -> str:
    """POSIX relative path of ``path`` under ``root`` (the basename when ``root`` is the file)."""
    return path.name if path == root else path.relative_to(root).as_posix()


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from a SHA-256 of the parts: the same on every machine and run."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def pad_to_min_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad ``(..., C, H, W)`` (reflect where possible) so that H and W are at least ``size``."""
    h, w = x.shape[-2:]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    flat = x.reshape(-1, *x.shape[-3:])
    out = F.pad(flat, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


def random_crop_box(h: int, w: int, size: int, generator: torch.Generator | None) -> tuple[int, int]:
    """Top-left corner of a random ``size`` x ``size`` crop."""
    top = int(torch.randint(0, h - size + 1, (), generator=generator))
    left = int(torch.randint(0, w - size + 1, (), generator=generator))
    return top, left


def center_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Centre crop of ``(..., H, W)`` to at most ``size`` (None keeps the whole image)."""
    if size is None:
        return x
    h, w = x.shape[-2:]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return x[..., top : top + size, left : left + size]


def random_flip_rot(tensors: Sequence[torch.Tensor], generator: torch.Generator | None) -> list[torch.Tensor]:
    """The same random flip and rot90 (8 dihedral transforms) applied to every tensor."""
    k = int(torch.randint(0, 4, (), generator=generator))
    flip = bool(torch.randint(0, 2, (), generator=generator))
    out = []
    for t in tensors:
        t = torch.flip(t, dims=(-1,)) if flip else t
        out.append(torch.rot90(t, k, dims=(-2, -1)).contiguous())
    return out


def training_generator() -> torch.Generator:
    """A generator seeded from the global RNG (seeded per worker and per epoch by the DataLoader)."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))


class _ImageStore:
    """Lists the images under some roots, reads them (optionally cached) and records bad ones."""

    def __init__(self, roots: PathsLike, channels: int | None, cache: bool, key: str, verify: bool) -> None:
        self.roots = as_path_list(roots)
        if not self.roots:
            raise ConfigError(f"{key}: no folder given")
        self.channels, self.cache, self.key = channels, cache, key
        self.failures: list[Failure] = []
        self._cache: dict[int, torch.Tensor] = {}
        self.items: list[tuple[Path, str]] = []
        for root in self.roots:
            self.items.extend((p, relative_path(p, root)) for p in list_images(root, key))
        self.items = [item for item in self.items if self._probe(item[0], full=verify)]
        if not self.items:
            raise DataNotFoundError(
                f"{key}: every image under {[str(r) for r in self.roots]} failed to read: {self.failures}; "
                f"fix or remove those files, or point {key} at another folder"
            )

    def _probe(self, path: Path, full: bool) -> bool:
        try:
            if full:
                read_image(path, self.channels)
            else:
                with open_image_checked(path):  # header only: cheap, catches non-images and bombs
                    pass
        except (MediaReadError, OSError, ValueError) as err:
            reason = (
                err.reason
                if isinstance(err, MediaReadError)
                else (str(err) if isinstance(err, ImageTooLargeError) else f"not a readable image ({err})")
            )
            record_failure(self.failures, path, reason)
            return False
        return True

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: int) -> torch.Tensor:
        if index in self._cache:
            return self._cache[index]
        x, _ = read_image(self.items[index][0], self.channels)
        if self.cache:
            self._cache[index] = x
        return x


class CleanImageDataset(Dataset):
    """Clean images -> ``(degraded, clean)`` pairs with an on-the-fly degradation.

    ``train=True``: ``patches_per_image`` random ``patch_size`` patches per image and epoch,
    flips and rot90. ``train=False``: each image once (centre crop to ``eval_patch_size`` if
    set), degradation seeded from ``(seed, relpath)``. ``channels``: 1 gray, 3 RGB.
    A file that fails to read is skipped and recorded in ``failures``.
    """

    def __init__(
        self,
        roots: PathsLike,
        degradation: Degradation | None = None,
        train: bool = True,
        patch_size: int = 128,
        patches_per_image: int = 1,
        eval_patch_size: int | None = None,
        channels: int = 3,
        seed: int = 0,
        cache: bool = False,
        augment: bool = True,
        key: str = "data.train_dir",
    ) -> None:
        self.store = _ImageStore(roots, channels, cache, key, verify=not train)
        self.degradation = degradation or Identity()
        self.train, self.patch_size, self.patches_per_image = train, int(patch_size), max(int(patches_per_image), 1)
        self.eval_patch_size, self.seed, self.augment = eval_patch_size, seed, augment

    @property
    def failures(self) -> list[Failure]:
        return self.store.failures

    def __len__(self) -> int:
        return len(self.store) * (self.patches_per_image if self.train else 1)

    def _clean(self, index: int, generator: torch.Generator) -> torch.Tensor:
        x = self.store.read(index)
        if not self.train:
            return center_crop(x, self.eval_patch_size)
        x = pad_to_min_size(x, self.patch_size)
        top, left = random_crop_box(x.shape[-2], x.shape[-1], self.patch_size, generator)
        x = x[..., top : top + self.patch_size, left : left + self.patch_size]
        return random_flip_rot([x], generator)[0] if self.augment else x.contiguous()

    def __getitem__(self, index: int) -> dict:
        index = index % len(self.store)
        for attempt in range(len(self.store)):
            i = (index + attempt) % len(self.store)
            path, relpath = self.store.items[i]
            generator = (
                training_generator() if self.train else torch.Generator().manual_seed(stable_seed(self.seed, relpath))
            )
            try:
                clean = self._clean(i, generator)
            except MediaReadError as err:
                if not self.train:
                    raise
                record_failure(self.failures, path, err.reason)
                continue
            degraded, meta = self.degradation(clean, generator)
            return {"input": degraded, "target": clean, "meta": meta, "relpath": relpath}
        raise DataNotFoundError(
            f"{self.store.key}: no readable image left in {[str(r) for r in self.store.roots]} (every one failed to read "
            f"during training): {self.failures}; fix or remove those files"
        )


def _pair_target(relpath: str, input_token: str | None, target_token: str | None) -> str | None:
    """Target relpath for an input relpath: a folder named ``input_token`` or a file-name prefix
    ``input_token`` is replaced by ``target_token``; None when the token is absent."""
    if input_token is None:
        return relpath
    parts = relpath.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == input_token:
            parts[i] = target_token or ""
            return "/".join(p for p in parts if p)
    if parts[-1].startswith(input_token):
        parts[-1] = (target_token or "") + parts[-1][len(input_token) :]
        return "/".join(parts)
    return None


class PairedImageDataset(Dataset):
    """Input/target images matched by relative path (GoPro-, SIDD- or two-folder layouts).

    Two folders: ``input_dir`` and ``target_dir`` hold the same relative paths. One tree with
    tokens: files under ``input_dir`` whose path has a folder named ``input_token`` (GoPro:
    ``blur`` -> ``sharp``) or a file-name prefix ``input_token`` (SIDD: ``NOISY_`` -> ``GT_``)
    are paired with the path where it is replaced by ``target_token``, under ``target_dir``.
    Unmatched inputs are recorded in ``failures``. Training takes aligned random patches.
    """

    def __init__(
        self,
        input_dir: str | os.PathLike[str],
        target_dir: str | os.PathLike[str] | None = None,
        input_token: str | None = None,
        target_token: str | None = None,
        train: bool = True,
        patch_size: int = 128,
        patches_per_image: int = 1,
        eval_patch_size: int | None = None,
        channels: int = 3,
        augment: bool = True,
        key: str = "data.train_dir",
    ) -> None:
        input_root = Path(input_dir).expanduser()
        target_root = Path(target_dir).expanduser() if target_dir is not None else input_root
        self.failures: list[Failure] = []
        self.pairs: list[tuple[Path, Path, str]] = []
        for path in list_images(input_root, key):
            relpath = relative_path(path, input_root)
            target_rel = _pair_target(relpath, input_token, target_token)
            if target_rel is None:
                continue  # a target itself, or not part of the layout
            target = target_root / target_rel
            if not target.is_file():
                record_failure(self.failures, path, f"no matching target {target}")
                continue
            self.pairs.append((path, target, relpath))
        if not self.pairs:
            raise DataNotFoundError(
                f"{key}: no input/target pairs under {input_root} (target folder {target_root}, "
                f"input_token={input_token!r}, target_token={target_token!r})"
            )
        self.train, self.patch_size, self.patches_per_image = train, int(patch_size), max(int(patches_per_image), 1)
        self.eval_patch_size, self.channels, self.augment = eval_patch_size, channels, augment

    def __len__(self) -> int:
        return len(self.pairs) * (self.patches_per_image if self.train else 1)

    def __getitem__(self, index: int) -> dict:
        path, target_path, relpath = self.pairs[index % len(self.pairs)]
        x, _ = read_image(path, self.channels)
        y, _ = read_image(target_path, self.channels)
        if x.shape != y.shape:
            raise ConfigError(
                f"{path} is {tuple(x.shape)} but its target {target_path} is {tuple(y.shape)}; pairs must match"
            )
        if self.train:
            generator = training_generator()
            x, y = pad_to_min_size(x, self.patch_size), pad_to_min_size(y, self.patch_size)
            top, left = random_crop_box(x.shape[-2], x.shape[-1], self.patch_size, generator)
            box = (slice(top, top + self.patch_size), slice(left, left + self.patch_size))
            x, y = x[..., box[0], box[1]], y[..., box[0], box[1]]
            if self.augment:
                x, y = random_flip_rot([x, y], generator)
        else:
            x, y = center_crop(x, self.eval_patch_size), center_crop(y, self.eval_patch_size)
        meta: Meta = {}
        return {"input": x.contiguous(), "target": y.contiguous(), "meta": meta, "relpath": relpath}
