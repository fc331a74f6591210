"""Writing a file without ever losing the one it replaces.

Every file the project writes (weights, checkpoints, config.json, histories, range tests, figures, the image
cache) goes to a temporary name of its own beside the target, unique to the process, and is renamed over the
target only once it is whole. A failure -- a full disk, a crash, two processes at once -- leaves the old file
as it was, removes the temporary one, and says why in one line.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import CourseError


class WriteError(CourseError, OSError):
    """A file could not be written; the file that was at its path is unchanged."""


@contextmanager
def replacing(path: str | os.PathLike):
    """``with replacing(path) as tmp: save(tmp)``: ``tmp`` ends with the target's suffix (``savefig`` and
    ``np.savez`` go by it) and becomes ``path`` only if the block finishes."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # mkstemp's 0600 would stay with the renamed file
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        reason = _reason(err, path.parent)
        if reason is None:
            raise
        raise WriteError(f"cannot write {path}: {reason}; the file that was there is unchanged") from None


def _reason(err: BaseException, folder: Path) -> str | None:
    """What an OS-level failure was, in words; None for anything else (a bug keeps its traceback)."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    # torch.save reports a full disk as a RuntimeError ("unexpected pos ..."), with no errno to read
    if isinstance(err, RuntimeError) and shutil.disk_usage(folder).free < 1 << 20:
        return "no space left on device"
    return None


def write_text(path: str | os.PathLike, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)
