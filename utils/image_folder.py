"""CIFAR-10 as an image folder (``train/<class>/*`` + ``test/<class>/*``) or a tarball of one, decoded once
and cached as an ``.npz`` keyed by what can change -- how the course's machines read a JPEG copy offline."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .dataset import CIFAR10_CLASSES, IMAGE_SHAPE, IMAGE_SUFFIXES, Dataset, DataUnavailableError, ImageData
from .errors import UsageError
from .files import WriteError, replacing


def is_image_folder_source(path: Path) -> bool:
    if path.is_file():
        return path.name.endswith((".tar", ".tar.gz", ".tgz"))
    return _find_split_root(path) is not None


def _find_split_root(path: Path) -> Path | None:
    """The folder holding train/ and test/: the path itself or its single subfolder."""
    if not path.is_dir():
        return None
    if (path / "train").is_dir() and (path / "test").is_dir():
        return path
    subdirs = [p for p in path.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / "train").is_dir() and (subdirs[0] / "test").is_dir():
        return subdirs[0]
    return None


def default_cache_dir() -> Path:
    return Path(os.environ.get("CIFAR10_CACHE_DIR") or Path.home() / ".cache" / "cifar10-course")


def load_image_folder(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Dataset:
    """Decode ``train/<class>/*`` and ``test/<class>/*`` (a folder or a tarball) once, then read the cache.

    The cache is an uncompressed ``.npz`` in ``cache_dir`` (default ``$CIFAR10_CACHE_DIR`` or
    ``~/.cache/cifar10-course``), keyed by what can change (``_source_key``), so the data folder itself
    is never written to and a changed source -- an image added, removed or rewritten -- is decoded again.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataUnavailableError(f"no data at {path}: pass --data-dir with an image folder or tarball, "
                                   f"use --data synthetic, or go online")
    cache = Path(cache_dir or default_cache_dir()) / f"{path.name.split('.')[0]}-{_source_key(path)}.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                classes = tuple(str(c) for c in z["classes"])
                if classes != CIFAR10_CLASSES:  # written before the class folders were checked
                    raise ValueError(classes)
                return Dataset(ImageData(z["train_x"], z["train_y"], classes),
                               ImageData(z["test_x"], z["test_y"], classes), f"image folder {path.name}")
        except Exception:  # a truncated cache (killed mid-write on an old version) is decoded again
            pass
    files = _read_tar(path) if path.is_file() else _read_folder(path)
    data = _decode_splits(files, path)
    try:  # a temporary name of this process's own: two processes may build the same cache at once
        with replacing(cache) as tmp:
            np.savez(tmp, train_x=data.train.images, train_y=data.train.labels, test_x=data.test.images,
                     test_y=data.test.labels, classes=np.array(data.classes))
    except WriteError as err:
        raise DataUnavailableError(f"{err}: set CIFAR10_CACHE_DIR to a writable folder") from None
    return data


def _source_key(path: Path) -> str:
    """A hash of what can change: a tarball's size and modification time; for a folder, every image
    file's name, size and modification time (a folder's own mtime misses files added in a subfolder)."""
    if path.is_file():
        stat = path.stat()
        listing = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"  # the key older versions used: caches stay valid
    else:
        root = _find_split_root(path) or path
        listing = str(path) + "".join(f"|{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}"
                                      for f in sorted(root.glob("*/*/*")) for st in [f.stat()])
    return hashlib.sha1(listing.encode()).hexdigest()[:16]


def _read_folder(path: Path) -> dict:
    root = _find_split_root(path)
    if root is None:
        raise DataUnavailableError(f"{path} has no train/ and test/ folders of class subfolders")
    return {str(f.relative_to(root)): f.read_bytes()
            for f in root.glob("*/*/*") if f.suffix.lower() in IMAGE_SUFFIXES}


def _read_tar(path: Path) -> dict:
    files = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    parts = Path(member.name).parts
                    if len(parts) >= 3 and parts[-3] in ("train", "test"):
                        files["/".join(parts[-3:])] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataUnavailableError(f"{path} is not a readable tar archive ({type(err).__name__}: {err}); "
                                   f"copy it again or pass --data-dir another copy") from None
    return files


def check_classes(found, where: str) -> None:
    """A folder's class names must be CIFAR-10's ten: a renamed, missing or extra folder would silently permute
    or shift every label (a folder's name is its label)."""
    missing, unexpected = sorted(set(CIFAR10_CLASSES) - set(found)), sorted(set(found) - set(CIFAR10_CLASSES))
    if missing or unexpected:
        raise UsageError(f"{where} must hold CIFAR-10's ten class folders ({', '.join(CIFAR10_CLASSES)}); "
                         + "; ".join(part for part in (f"missing: {', '.join(missing)}" if missing else "",
                                                       f"unexpected: {', '.join(unexpected)}" if unexpected else "")
                                     if part) + "; rename or remove those folders")


def _decode_splits(files: dict, source: Path) -> Dataset:
    """files: {'train/cat/0001.jpg': bytes}. Labels are CIFAR-10's class numbers, by folder name; hidden folders
    and files (``.ipynb_checkpoints``) are not images of the dataset and are left out."""
    files = {name: data for name, data in files.items() if not any(part.startswith(".") for part in name.split("/"))}
    classes = CIFAR10_CLASSES
    splits = []
    for split in ("train", "test"):
        names = sorted(n for n in files if n.startswith(split + "/"))
        check_classes({n.split("/")[1] for n in names}, f"{source.name}: {split}/")
        images = np.empty((len(names), *IMAGE_SHAPE), dtype=np.uint8)
        for i, name in enumerate(names):
            try:
                img = Image.open(io.BytesIO(files[name])).convert("RGB")
            except (UnidentifiedImageError, OSError) as err:
                raise DataUnavailableError(f"{source}/{name} is not a readable image ({type(err).__name__}); "
                                           f"remove or replace that file") from None
            if img.size != (32, 32):
                raise UsageError(f"{source}/{name} is {img.size[0]}x{img.size[1]}; CIFAR images must be 32x32")
            images[i] = np.asarray(img)
        labels = np.array([classes.index(n.split("/")[1]) for n in names], dtype=np.int64)
        splits.append(ImageData(images, labels, classes))
    return Dataset(*splits, f"image folder {source.name}")
