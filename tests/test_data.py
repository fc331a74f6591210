import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from utils.data import CIFAR10_CLASSES, CIFAR10_MEAN, DataUnavailableError, ImageData, load_dataset, make_synthetic
from utils.image_folder import load_image_folder
from utils.loaders import make_loaders
from utils.transforms import s10_train_transform, eval_transform


def _write_folder(root, n_per_class=2, classes=CIFAR10_CLASSES, size=32, fmt="PNG"):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n_per_class):
                arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i:04d}.{fmt.lower()}", fmt)
    return root


def test_image_folder_decodes_and_caches(tmp_path):
    src = _write_folder(tmp_path / "imgs")
    data = load_image_folder(src, cache_dir=tmp_path / "cache")
    assert data.classes == CIFAR10_CLASSES
    assert data.train.images.shape == (20, 32, 32, 3) and data.train.images.dtype == np.uint8
    assert data.train.labels.tolist() == [label for label in range(10) for _ in range(2)]
    # PNG is lossless: the decoded pixels are the written ones
    first = np.asarray(Image.open(src / "train" / "airplane" / "0000.png"))
    assert np.array_equal(data.train.images[0], first)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = load_image_folder(src, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.test.images, data.test.images)


def test_tarball_reads_like_the_folder(tmp_path):
    src = _write_folder(tmp_path / "pack" / "cifar")
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar")
    from_tar = load_dataset("cifar10", archive, cache_dir=tmp_path / "c1")
    from_dir = load_image_folder(tmp_path / "pack", cache_dir=tmp_path / "c2")  # single subfolder is found
    assert np.array_equal(from_tar.train.images, from_dir.train.images)
    assert np.array_equal(from_tar.test.labels, from_dir.test.labels)


def test_wrong_image_size_is_a_clear_error(tmp_path):
    src = _write_folder(tmp_path / "imgs", size=28)
    with pytest.raises(ValueError, match="must be 32x32"):
        load_image_folder(src, cache_dir=tmp_path / "cache")


def test_offline_without_data_names_the_ways_out(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        if kwargs.get("download"):
            raise OSError("network unreachable")
        raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("cifar10", tmp_path / "nothing")
    message = str(err.value)
    assert "--data-dir" in message and "--data synthetic" in message and "online" in message
    assert "\n" not in message


def test_unknown_source():
    with pytest.raises(ValueError, match="synthetic"):
        load_dataset("imagenet")


def test_image_data_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="32 x 32"):
        ImageData(np.zeros((2, 28, 28, 3), np.uint8), np.zeros(2), ("a",))
    with pytest.raises(ValueError, match="labels"):
        ImageData(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(3), ("a",))


def test_synthetic_is_reproducible_and_balanced():
    a, b = make_synthetic(300, 100, seed=1), make_synthetic(300, 100, seed=1)
    assert np.array_equal(a.train.images, b.train.images)
    assert a.train.images.shape == (300, 32, 32, 3) and set(a.train.labels.tolist()) == set(range(10))
    assert not np.array_equal(a.train.images, make_synthetic(300, 100, seed=2).train.images)


def test_validation_split_leaves_test_untouched(synthetic):
    split = synthetic.split_validation(100, seed=0)
    assert len(split.train) == 500 and len(split.test) == 100
    # the validation images are training images, and none of them is also trained on
    rows = {img.tobytes() for img in split.train.images}
    assert not any(img.tobytes() in rows for img in split.test.images)


def test_loaders_shapes_shuffling_and_determinism(synthetic):
    train_loader, test_loader = make_loaders(synthetic, eval_transform(), eval_transform(), batch_size=64,
                                             num_workers=0, seed=3)
    batches = list(train_loader)
    x, y = batches[0]
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 1.0  # normalised
    first_epoch = torch.cat([b[1] for b in batches])
    second_epoch = torch.cat([b[1] for b in train_loader])
    assert not torch.equal(first_epoch, second_epoch)  # reshuffled every epoch
    test_labels = torch.cat([b[1] for b in test_loader])
    assert torch.equal(test_labels, torch.as_tensor(synthetic.test.labels))  # test order is fixed
    again, _ = make_loaders(synthetic, eval_transform(), eval_transform(), batch_size=64, num_workers=0, seed=3)
    assert torch.equal(first_epoch, torch.cat([b[1] for b in again]))  # same seed, same order
    assert not train_loader.pin_memory  # CPU only


def test_workers_get_distinct_augmentation_streams(synthetic):
    """albumentations' Compose keeps its own RNG; forked workers must not replay each other's crops."""
    one_image = synthetic.train.subset(indices=np.zeros(16, dtype=int))  # the same image 16 times
    data = type(synthetic)(one_image, one_image)
    train_loader, _ = make_loaders(data, s10_train_transform(seed=0), eval_transform(), batch_size=8,
                                   num_workers=2, seed=0)
    epoch1 = [x for x, _ in train_loader]
    epoch2 = [x for x, _ in train_loader]
    assert not torch.equal(epoch1[0], epoch1[1])  # batch 0 (worker 0) vs batch 1 (worker 1)
    assert not torch.equal(epoch1[0], epoch2[0])  # epoch 1 vs epoch 2 on the same worker


def test_real_cifar10_jpeg_copy(cifar_jpeg):
    data = cifar_jpeg
    assert len(data.train) == 50_000 and len(data.test) == 10_000
    assert data.classes == ("airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck")
    assert np.bincount(data.train.labels).tolist() == [5000] * 10
    mean = data.train.images.reshape(-1, 3).mean(0) / 255
    assert np.allclose(mean, CIFAR10_MEAN, atol=0.01)


def test_real_copy_second_load_reads_the_cache_without_decoding(cifar_jpeg, monkeypatch):
    from tests.conftest import JPEG_ARCHIVE
    import utils.image_folder

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(utils.image_folder, "_decode_splits", no_decoding)
    again = load_image_folder(JPEG_ARCHIVE)
    assert np.array_equal(again.test.images, cifar_jpeg.test.images)
