"""What every session notebook needs before its first real call: a config, and the size to run at.

The notebook's config cell picks the mode (``MODE = "full"``); the environment overrides it, for CI and the
commands in the READMEs:

- ``full``: the session's whole recipe on all of CIFAR-10 (what "Run all" on Colab trains).
- ``replay`` (``COURSE_REPLAY=1``): trains nothing; the training cell loads the session's committed final
  weights and history (``S9/s9_weights.pt``, ``S9/history.csv``), so every picture after it shows the
  session's result in about a minute. The stored outputs on GitHub are made this way.
- ``short`` (``COURSE_SHORT=1``): 5,000 train / 2,000 test real images, 3 epochs, batch 128: what a CPU can
  show of a big model learning. It writes the session's pictures and the run folder ``runs/<recipe>-short``;
  it is never the session's result.
- ``smoke`` (``COURSE_SMOKE=1``): a small data subset, a few batches, two short epochs, so nbval can run all
  four notebooks on a CPU in minutes; its numbers mean nothing.

``COURSE_SHORT`` and ``COURSE_REPLAY`` also take a comma-separated list of recipe names instead of ``1``, for a
notebook with two recipes whose full results come at different times: ``COURSE_REPLAY=s11
COURSE_SHORT=s11-resnet56`` replays S11's finished run and shows the ResNet-56 as a short run.

The data come from ``$CIFAR10_DIR`` when set (e.g. the JPEG copy), else torchvision's download into
``data/``; smoke mode without ``$CIFAR10_DIR`` uses synthetic images.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from .checkpoint import load_weights
from .errors import UsageError
from .history import TABLE_HEADER, History, format_row
from .recipes import RECIPES, Recipe, get_recipe
from .run_folder import check_same_run
from .spec import DataSpec, RunSpec

SMOKE_ENV = "COURSE_SMOKE"
SHORT_ENV = "COURSE_SHORT"
FAST_ENV = "COURSE_FAST"  # 1: the batched route (utils.gpu_data); unset or 0: the albumentations DataLoader
REPLAY_ENV = "COURSE_REPLAY"
MODES = ("full", "replay", "short", "smoke")
SHORT = dict(n_train=5000, n_test=2000, epochs=3, batch_size=128, lr_find_iters=50)
# Full runs share the command line's run folders (runs/<recipe> at the repository root), so a notebook
# replays or continues a run made with `python -m utils train <recipe>` instead of training it again.
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(kw_only=True)
class NotebookConfig:
    spec: RunSpec                # the run, as ``python -m utils train`` would build it for this mode
    mode: str                    # "smoke", "short" or "full" (a replay is full mode with ``replay`` set)
    run_dir: Path                # checkpoint, history and log of this notebook's run
    figures: Path                # where the session README's pictures are written
    replay: Path | None = None   # COURSE_REPLAY=1: the folder with the committed weights and history
    chosen_by: str = "MODE"      # what set the mode: the cell's MODE, or an environment variable that overrides it

    @property
    def recipe(self) -> Recipe:
        return self.spec.recipe

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def smoke(self) -> bool:
        return self.mode == "smoke"

    @property
    def record_dir(self) -> Path:
        """Where the run's LR range test (``lr_finder.json``) is read from: the committed one beside the notebook
        when replaying, so the stored outputs come only from what the repository holds; else the run folder."""
        return self.replay if self.replay is not None else self.run_dir

    def figure(self, name: str) -> Path:
        self.figures.mkdir(parents=True, exist_ok=True)
        return self.figures / name

    def __repr__(self):
        r, spec, data = self.recipe, self.spec, self.spec.data
        mode = {"smoke": "SMOKE (CI-sized; numbers mean nothing)",
                "short": "SHORT (a real subset for a few epochs: shows the loop learning, not the session's result)",
                "full": "full"}[self.mode]
        from .run_folder import describe_hardware

        subset = f"{data.n_train or 'all'} train / {data.n_test or 'all'} test images"

        def shown(path: Path) -> str:  # never an absolute machine path in a stored output
            path = path.resolve()
            return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else "a temporary folder"
        lrs = ("LR from the LR finder below" if r.find_lr else f"lr {r.lr_min:g} -> {r.lr_max:g}")
        route = {True: "batched on the device (COURSE_FAST=1)", False: "albumentations DataLoader"}
        if self.replay is not None:
            mode = f"replay, replaying the committed weights and history in {shown(self.replay)}"
        if self.chosen_by != "MODE":  # a stored output must not seem to contradict the cell's MODE line
            mode += f"; set by {self.chosen_by}"
        return (f"{r.name} [{mode}]: {r.model}, {r.epochs} epochs x batch {r.batch_size}, {r.optimizer}, "
                f"{lrs}, peak at epoch {r.peak_epoch:g}; data route: {route[spec.fast]}\n"
                f"data: {data.source} {Path(data.data_dir).name if data.data_dir else ''} ({subset}); "
                f"this machine: {describe_hardware(spec.device)}\nrun folder: {shown(self.run_dir)}; "
                f"figures: {shown(self.figures)}")


def _applies(variable: str, recipe: str) -> bool:
    """Whether a mode variable (``1``, or a comma-separated list of recipe names) covers this recipe."""
    value = os.environ.get(variable, "")
    if value in ("", "0", "1"):
        return value == "1"
    names = [name.strip() for name in value.split(",")]
    for name in names:
        if name not in RECIPES:  # a typo would otherwise start a full training run without a word
            raise UsageError(f"{variable}={value}: unknown recipe {name!r}; use 1 or names from: {', '.join(RECIPES)}")
    return recipe in names


def environment_mode(recipe: str) -> str | None:
    """The mode the environment sets for ``recipe`` (None: it sets none); a value it cannot mean is an error,
    so that ``COURSE_SMOKE=true`` does not silently run the full recipe."""
    smoke = os.environ.get(SMOKE_ENV, "")
    if smoke not in ("", "0", "1"):
        raise UsageError(f"{SMOKE_ENV}={smoke!r}: use 1 for a smoke run, or leave it unset")
    replay, short = _applies(REPLAY_ENV, recipe), _applies(SHORT_ENV, recipe)
    if replay and (smoke == "1" or short):
        raise UsageError(f"{REPLAY_ENV} replays a session's committed full run, so {recipe} cannot also be smoke or "
                         f"short: unset {SMOKE_ENV}, and leave {recipe} out of {SHORT_ENV}")
    return "smoke" if smoke == "1" else "short" if short else "replay" if replay else None


def notebook_config(recipe: str, mode: str = "full", epochs: int | None = None, batch_size: int | None = None,
                    run_dir: str | os.PathLike | None = None, figures: str | os.PathLike = ".",
                    seed: int = 0) -> NotebookConfig:
    """The recipe as the notebook will run it in ``mode`` (one of ``MODES``; the environment overrides it, see
    above); in smoke mode everything small and written to a temp folder."""
    if mode not in MODES:
        raise UsageError(f"MODE = {mode!r} is not one of {', '.join(map(repr, MODES))}")
    chosen_by = "MODE"
    if (forced := environment_mode(recipe)) not in (None, mode):
        variable = {"smoke": SMOKE_ENV, "short": SHORT_ENV, "replay": REPLAY_ENV}[forced]
        chosen_by, mode = f"{variable}={os.environ[variable]}, which overrides MODE = {mode!r}", forced
    data_dir = os.environ.get("CIFAR10_DIR")
    fast = {"1": True, "0": False, None: False}.get(os.environ.get(FAST_ENV), "bad")
    if fast == "bad":
        raise UsageError(f"{FAST_ENV} must be 1 (batched route) or 0 (DataLoader route), got {os.environ[FAST_ENV]!r}")
    if mode == "smoke":
        scratch = Path(tempfile.mkdtemp(prefix=f"{recipe}-smoke-"))
        data = DataSpec("cifar10" if data_dir else "synthetic", data_dir, n_train=1024, n_test=256)
        # 30 range-test steps, not 20: at batch 32 the loss of 20 steps is mostly noise, and its minimum can land at
        # the start (an error, rightly, in a real run)
        spec = RunSpec(get_recipe(recipe).scaled(2, 32), data, seed=seed, fast=fast, limit_batches=4,
                       lr_find_iters=30)
        return NotebookConfig(spec=spec, mode="smoke", run_dir=scratch / "run", figures=scratch, chosen_by=chosen_by)
    if mode == "short":
        full = get_recipe(recipe)
        short = full.scaled(SHORT["epochs"], SHORT["batch_size"])
        # Linear scaling rule: a smaller batch takes proportionally smaller steps (the LR finder, where the
        # recipe uses it, measures its own range at this batch size anyway).
        ratio = short.batch_size / full.batch_size
        short = replace(short, lr_min=full.lr_min * ratio, lr_max=full.lr_max * ratio)
        # real images, never synthetic: from CIFAR10_DIR, else torchvision's download (as in full mode)
        data = DataSpec("cifar10", data_dir or "data", n_train=SHORT["n_train"], n_test=SHORT["n_test"])
        spec = RunSpec(short, data, seed=seed, fast=fast, lr_find_iters=SHORT["lr_find_iters"])
        return NotebookConfig(spec=spec, mode="short", run_dir=Path(run_dir or REPO_ROOT / "runs" / f"{recipe}-short"),
                              figures=Path(figures), chosen_by=chosen_by)
    spec = RunSpec(get_recipe(recipe).scaled(epochs, batch_size), DataSpec("cifar10", data_dir or "data"), seed=seed,
                   fast=fast)
    return NotebookConfig(spec=spec, mode="full", run_dir=Path(run_dir or REPO_ROOT / "runs" / recipe),
                          figures=Path(figures), replay=Path(figures) if mode == "replay" else None, chosen_by=chosen_by)


def train_or_replay(run, optimizer, scheduler, config: NotebookConfig, log=print) -> History:
    """The training cell: ``run.fit`` with a checkpoint and the history in the run folder after every epoch
    (running the cell again continues an interrupted run, and a finished one is replayed from its checkpoint).

    With ``config.replay`` (``COURSE_REPLAY=1``) nothing is trained: the session's committed final weights
    (``<recipe>_weights.pt``) go into ``run.model`` and its committed history is returned, and the output says so.
    """
    if config.replay is None:
        checkpoint = config.run_dir / "checkpoint.pt"
        if checkpoint.exists():  # continuing a run: the one this notebook would train, not a smoke run or a --set one
            check_same_run(config.run_dir, run.record())
        return run.fit(optimizer, scheduler, checkpoint_path=checkpoint, resume=checkpoint.exists())
    name = config.recipe.name
    weights = config.replay / f"{name}_weights.pt"
    saved = [config.replay / f"history.{suffix}" for suffix in ("json", "csv")]
    saved = [path for path in saved if path.exists()]
    if not weights.exists() or not saved:
        raise FileNotFoundError(f"{REPLAY_ENV}=1 replays the committed result, but {weights.name} or history.json/.csv "
                                f"is missing in {config.replay}; unset {REPLAY_ENV} to train")
    load_weights(run.model, weights)
    history = History.load(saved[0])
    log(f"replayed, nothing trained: the final weights ({weights.name}) and the history ({saved[0].name}) of "
        f"`python -m utils train {name}`, committed beside this notebook (README.md tells how they were made)")
    log(TABLE_HEADER)
    for row in history:
        log(format_row(row))
    return history
