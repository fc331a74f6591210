"""A run folder: what it holds, the checks that keep one run's results from being overwritten or resumed
with other settings, its log, and the provenance it records (hardware, code version)."""
from __future__ import annotations

import json
import os
import platform
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .errors import CourseError, UsageError
from .history import TABLE_HEADER

# What a run folder holds; a new run refuses a folder holding any of them (another run's results).
RUN_FILES = ("config.json", "train.log", "history.json", "history.csv", "curves.png", "checkpoint.pt",
             "model.pt", "lr_finder.png", "lr_finder.json")
# What defines a run: resuming with any of these changed would train something that matches neither.
# The LRs count where the recipe fixes them; the LR finder's are known only after it has run (and a resume reuses them).
DEFINING = ("recipe", "data", "n_train", "n_test", "validation", "limit_batches", "seed", "fast_path", "precision",
            "lr_min", "lr_max")


class RunExistsError(CourseError, FileExistsError):
    """The run folder already holds another run's results."""


class RunInUseError(CourseError):
    """Another process is training into the same run folder."""


class RunLog:
    """Prints a line and appends it to the run's log file, so the log survives an interrupted run.

    The file lists each epoch once: a resumed run prints its earlier epochs again (so the console shows the
    whole table), but the rows and the table header the file already holds are not written twice."""

    def __init__(self, path: Path):
        self.path = path
        self.written = set(path.read_text().splitlines()) if path.exists() else set()

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        if line in self.written and (line == TABLE_HEADER or _is_row(line)):
            return
        self.written.add(line)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def _is_row(line: str) -> bool:
    """Whether a log line is a row of the epoch table (its first field an epoch number)."""
    first = line.split(maxsplit=1)[:1]
    return bool(first) and first[0].isdigit() and len(line.split()) == len(TABLE_HEADER.split())


def describe_hardware(device: torch.device) -> str:
    """The GPU's name, or the CPU's model, cores and torch threads: what a timing in a log was measured on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here; platform.processor() only says "x86_64"
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} CPU ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads"


def code_version() -> str | None:
    """The commit this code is (with "+changes" when the work tree differs from it), or None outside git."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if dirty else "")


def check_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to write over results this run did not make; a one-line error says the way out. Writes nothing."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; point --out at a folder")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if resume and not (out / "checkpoint.pt").exists():
        raise CheckpointError(f"no checkpoint at {out / 'checkpoint.pt'}; run without --resume to start fresh")
    if not resume and present and not overwrite:
        raise RunExistsError(f"{out} already holds a run's files ({', '.join(present)}): pass --resume to "
                             f"continue it, --out another folder, or --overwrite to replace them")


REPLACED = ".replaced"  # where an --overwrite run keeps the files of the run it replaces until its first epoch


def make_folder(out: Path, resume: bool) -> None:
    """Create the run folder and check it is writable. A fresh run moves the files of the run it replaces into
    ``REPLACED``, until it has a checkpoint of its own (``run_folder``)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            aside = out / REPLACED
            shutil.rmtree(aside, ignore_errors=True)
            for name in RUN_FILES:
                if (out / name).exists():
                    aside.mkdir(exist_ok=True)
                    os.replace(out / name, aside / name)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"cannot write to --out {out} ({err.strerror}); choose a writable folder") from None


@contextmanager
def run_folder(out: Path, resume: bool):
    """``make_folder``; when the block ends, the replaced run's files are deleted if this run wrote a checkpoint
    (it has results of its own), else put back (``keep_replaced``: it failed before its first epoch)."""
    make_folder(out, resume)
    try:
        yield
    finally:
        if (out / "checkpoint.pt").exists():
            drop_replaced(out)
        else:
            keep_replaced(out)


def keep_replaced(out: Path) -> None:
    """Put back the replaced run's files: this run failed before it had anything to replace them with."""
    aside = out / REPLACED
    if aside.is_dir():
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)  # this run's log, config, range test
        for path in aside.iterdir():
            os.replace(path, out / path.name)
        aside.rmdir()


def drop_replaced(out: Path) -> None:
    shutil.rmtree(out / REPLACED, ignore_errors=True)


@contextmanager
def holding(out: Path):
    """This process holds the run folder: a second ``train`` into it is refused. The lock is the OS's (fcntl),
    so a killed process leaves none behind."""
    try:
        import fcntl
    except ImportError:  # Windows has no fcntl: no lock there
        yield
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / ".lock", "a")
    except OSError as err:
        raise UsageError(f"cannot write to --out {out} ({err.strerror}); choose a writable folder") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(f"another run is training into {out} now: wait for it to end, or train into "
                                f"another --out") from None
        yield


def _flat(config: dict) -> dict:
    """config.json's fields with the recipe's spelled out: {"seed": 0, "recipe.epochs": 24, ...}."""
    return {**{k: v for k, v in config.items() if k != "recipe"},
            **{f"recipe.{k}": v for k, v in config.get("recipe", {}).items()}}


def check_same_run(out: Path, config: dict) -> dict | None:
    """The config.json of the run in ``out`` (None: it has none), after checking that ``config`` defines the same
    run: what both record of ``DEFINING`` must be equal, or continuing it would train something that is neither."""
    previous_path = out / "config.json"
    try:
        previous = json.loads(previous_path.read_text()) if previous_path.exists() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{previous_path} is damaged (not valid JSON), so this run's settings are unknown: "
                              f"restore it from a copy to resume, or train into a new --out folder") from None
    if previous is not None:
        mine = {key: config[key] for key in DEFINING if key in config}
        was, now = _flat(previous), _flat(json.loads(json.dumps(mine, default=str)))
        changed = [f"{key} {was[key]!r} (now {value!r})" if key in was else f"{key} not recorded (now {value!r})"
                   for key, value in now.items() if key not in was or was[key] != value]
        if changed:
            raise UsageError(f"{out} was started with {', '.join(changed)}; continue it with the same settings, "
                             f"or train into another folder")
    return previous


def check_resume(out: Path, config: dict) -> dict:
    """The previous run's config, LRs included, after checking that ``config`` defines the same run. (Whether the
    checkpoint fits the model is checked as training loads it.)"""
    previous = check_same_run(out, config)
    if previous is None or "lr_max" not in previous:
        raise CheckpointError(f"{out} has a checkpoint but no config.json with its learning rates; "
                              f"start a new run with another --out")
    return previous
