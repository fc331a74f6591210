"""Progress bars: on unless turned off, by argument or by the ``TQDM_DISABLE`` environment variable.

tqdm reads ``TQDM_DISABLE`` only for arguments left at their default. Its notebook bar (the one ``tqdm.auto``
picks inside Jupyter, and torch-lr-finder's ``tqdm.autonotebook``) always passes ``disable`` itself, so the
variable is ignored there and an executed notebook stores a dead widget per bar. These helpers read the
variable themselves and hand tqdm an explicit ``disable``.
"""
from __future__ import annotations

import contextlib
import functools
import os

import tqdm.auto


def bars_enabled(progress: bool = True) -> bool:
    """``progress``, unless ``TQDM_DISABLE`` is set to anything non-empty (as tqdm itself reads it)."""
    return bool(progress) and not os.environ.get("TQDM_DISABLE")


def progress_bar(progress: bool = True, **kwargs):
    """A ``tqdm.auto`` bar, disabled unless ``bars_enabled(progress)``."""
    return tqdm.auto.tqdm(disable=not bars_enabled(progress), **kwargs)


@contextlib.contextmanager
def library_bars(module, progress: bool = True):
    """Within the block, ``module.tqdm`` (a library's own bar) obeys ``bars_enabled(progress)``."""
    original = module.tqdm
    if not bars_enabled(progress):
        module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        module.tqdm = original
