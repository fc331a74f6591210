import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
# The real CIFAR-10 images (JPEG q75 copy) live beside the repository, never inside it.
JPEG_ARCHIVE = Path(os.environ.get("CIFAR10_JPEG", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))


@pytest.fixture(scope="session")
def synthetic():
    from utils.data import make_synthetic

    return make_synthetic(n_train=600, n_test=200, seed=0)


@pytest.fixture(scope="session")
def cifar_jpeg(tmp_path_factory):
    """All 60,000 real images, decoded once per machine (cached as .npz in the user cache folder)."""
    if not JPEG_ARCHIVE.exists():
        pytest.skip(f"real-data test: {JPEG_ARCHIVE} not present (set CIFAR10_JPEG to its path)")
    from utils.image_folder import load_image_folder

    return load_image_folder(JPEG_ARCHIVE)
