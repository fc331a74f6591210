"""pytest setup for the whole repository: unit tests in tests/ and the session notebooks under nbval."""
import os
from pathlib import Path

# Notebooks run CI-sized: a data subset, a few batches, two short epochs (see utils/notebook.py).
# nbval's kernels inherit this environment.
os.environ.setdefault("COURSE_SMOKE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations asks PyPI for updates on import
os.environ.setdefault("MPLBACKEND", "Agg")

# The real images (CIFAR-10 as a JPEG q75 copy) beside the repository, when there: the notebooks' smoke
# runs then use a real subset instead of synthetic images.
_archive = Path(__file__).resolve().parent.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
if _archive.exists():
    os.environ.setdefault("CIFAR10_DIR", str(_archive))
