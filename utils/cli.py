"""``python -m utils``: train a recipe, print a model summary, run the LR range test, evaluate or inspect weights."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CourseError, UsageError
from .recipes import RECIPES
from .train import PRECISIONS


def positive_int(text: str) -> int:
    """argparse type: a whole number above 0 (0 or -1 would otherwise silently mean "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


MAX_EPOCHS = 10_000  # far beyond any recipe; a typo of many digits would otherwise train forever at a flat LR


def epoch_count(text: str) -> int:
    """argparse type for --epochs: a positive whole number no larger than MAX_EPOCHS."""
    value = positive_int(text)
    if value > MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_EPOCHS:,}, got {text}")
    return value


def seed_value(text: str) -> int:
    """argparse type for --seed: a whole number from 0 to 2**32 - 1 (what every RNG seeded from it accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {2**32 - 1}, got {value}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (``error: ...``), like every other error of the command line."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p):
        p.add_argument("--data", choices=["cifar10", "synthetic"], default="cifar10",
                       help="cifar10: torchvision's, or the image folder/tarball given by --data-dir")
        p.add_argument("--data-dir", help="torchvision CIFAR-10 folder, or an image folder/tarball "
                                          "(default: $CIFAR10_DIR, else ./data)")
        p.add_argument("--n-train", type=positive_int, help="use a random subset of this many training images")
        p.add_argument("--n-test", type=positive_int, help="use a random subset of this many test images")
        p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
        p.add_argument("--workers", type=int, choices=range(0, 65), metavar="N", help="data loader workers (default: min(2, cores))")

    def set_option(p):
        p.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="settings",
                       help="change one recipe field for this run, e.g. --set weight_decay=1e-4, or a model argument, "
                            "e.g. --set model.dropout=0; any model takes model.bn_momentum (torch's convention; Keras' 0.99 "
                            "is 0.01) (repeatable)")

    def route_options(p):
        p.add_argument("--fast", action="store_true",
                       help="the dataset on the device and whole batches augmented there (utils.gpu_data), for a GPU "
                            "that outruns the albumentations DataLoader (the default, on every device)")
        p.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="auto: bf16 autocast where the GPU or CPU has it natively, else fp16 on a GPU, fp32 on a CPU")

    train = sub.add_parser("train", help="train a recipe and write a run folder")
    train.add_argument("recipe", choices=list(RECIPES))
    train.add_argument("--epochs", type=epoch_count)
    train.add_argument("--batch-size", type=positive_int)
    data_options(train)
    train.add_argument("--out", help="run folder (default: runs/<recipe>)")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace the run files already in --out")
    train.add_argument("--seed", type=seed_value, default=0)
    train.add_argument("--limit-batches", type=positive_int, help="at most K batches per epoch (smoke runs)")
    train.add_argument("--stop-after", type=positive_int, metavar="K",
                       help="end after epoch K of the recipe's schedule, checkpoint kept; --resume continues")
    train.add_argument("--validation", type=positive_int, default=0,
                       help="hold out N training images and evaluate on them instead of the test set")
    set_option(train)
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    route_options(train)
    train.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster steps)")

    summary = sub.add_parser("summary", help="model summary, parameter count and receptive field")
    summary.add_argument("recipe", choices=list(RECIPES))

    lr_find = sub.add_parser("lr-find", help="LR range test on the training set; saves the plot")
    lr_find.add_argument("recipe", choices=list(RECIPES))
    lr_find.add_argument("--num-iter", type=positive_int, default=100)
    lr_find.add_argument("--batch-size", type=positive_int)
    lr_find.add_argument("--out", default="lr_finder.png", help="the plot; the curve goes beside it as .json")
    lr_find.add_argument("--overwrite", action="store_true", help="replace the plot and curve already at --out")
    lr_find.add_argument("--seed", type=seed_value, default=0)
    set_option(lr_find)
    lr_find.add_argument("--validation", type=positive_int, default=0,
                         help="leave out the N images a train --validation N run holds out")
    data_options(lr_find)
    route_options(lr_find)

    from .bench import add_arguments as bench_arguments

    bench_arguments(sub.add_parser("bench", help="data-pipeline and training throughput, side by side"))

    evaluate = sub.add_parser("evaluate", help="test accuracy of saved weights")
    evaluate.add_argument("recipe", choices=list(RECIPES))
    evaluate.add_argument("--weights", required=True, help="a state_dict or checkpoint file")
    evaluate.add_argument("--precision", choices=PRECISIONS, default="fp32",
                          help="evaluate under this autocast, e.g. the run's own (its log says which); default fp32")
    evaluate.add_argument("--tta", action="store_true",
                          help="also score with flip test-time augmentation (each image's logits plus its mirror's, fp32)")
    evaluate.add_argument("--recompute-bn", type=int, metavar="N",
                          help="also score after replacing the batch-norm running statistics by averages over N "
                               "augmented training batches: how much of a bad test loss stale statistics explain")
    evaluate.add_argument("--seed", type=seed_value, default=0, help="the training batches' order and augmentation")
    data_options(evaluate)
    set_option(evaluate)  # weights trained before a recipe changed, e.g. --set model.logit_scale=1 for S10's

    inspect = sub.add_parser("inspect", help="a network's health from its weights: dead batch-norm channels, BN "
                                             "scales and weight norms per stage")
    inspect.add_argument("weights", help="a state_dict or checkpoint file, e.g. S11/s11_weights.pt")
    inspect.add_argument("--dead-below", type=float, default=None, metavar="X",
                         help="a BN channel is dead when |gamma| and |beta| are both below X (default 0.01)")

    export = sub.add_parser("export", help="a run's final weights as a half-precision state_dict, to commit")
    export.add_argument("weights", help="a run folder's model.pt (or checkpoint.pt)")
    export.add_argument("--out", required=True, help="e.g. S10/s10_weights.pt")
    export.add_argument("--overwrite", action="store_true", help="replace the weights file already at --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CourseError as err:  # what the user can fix; anything else is a bug and keeps its traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


def run_spec(args, **options):
    """The ``RunSpec`` that ``train`` and ``lr-find`` build from their arguments (``options``: what only one has)."""
    from .recipes import get_recipe
    from .spec import DataSpec, RunSpec

    recipe = get_recipe(args.recipe).with_overrides(args.settings).scaled(getattr(args, "epochs", None),
                                                                         args.batch_size)
    data = DataSpec(args.data, args.data_dir, args.n_train, args.n_test, args.validation)
    return RunSpec(recipe, data, seed=args.seed, device=args.device, precision=args.precision, fast=args.fast,
                   num_workers=args.workers, settings=tuple(args.settings or ()), **options)


def _train(args) -> int:
    from .run import train_recipe

    spec = run_spec(args, limit_batches=args.limit_batches, compile=args.compile)
    history, out = train_recipe(spec, args.out, resume=args.resume, overwrite=args.overwrite,
                                progress=not args.no_progress, stop_after=args.stop_after)
    print(f"run folder: {out}")
    return 0


def _summary(args) -> int:
    from .receptive_field import receptive_field, summary
    from .recipes import get_recipe

    model = get_recipe(args.recipe).build_model()
    result = summary(model)
    print(result.text)
    table = receptive_field(model)
    print(table.to_markdown())
    print(f"\nparameters: {result.total_params:,}; receptive field: {table.total}")
    return 0


def refuse_existing(*paths, overwrite: bool) -> None:
    """Like ``train``: a command never replaces a file it did not make unless told to."""
    present = [str(p) for p in paths if Path(p).exists()]
    if present and not overwrite:
        raise UsageError(f"{', '.join(present)} already exists: pass --overwrite to replace it, or another --out")


def _lr_find(args) -> int:
    from .run import build_run

    spec = run_spec(args, lr_find_iters=args.num_iter)
    refuse_existing(args.out, Path(args.out).with_suffix(".json"), overwrite=args.overwrite)
    # with --validation the range test sees only the training part of the split, as a train --validation run
    run = build_run(spec, spec.load_data())
    found = run.find_lr(save_path=args.out)
    print(f"lr_max {found.lr_max:.4g} ({found.rule}), lr_min {found.lr_min:.4g}; {run.precision}, batch "
          f"{spec.recipe.batch_size}, {len(found.history['lr'])} iterations; plot: {args.out}")
    return 0


def _evaluate(args) -> int:
    from .data import load_dataset
    from .loaders import make_loaders
    from .recipes import get_recipe
    from .checkpoint import load_weights
    from .inference import flip_tta, recompute_batchnorm
    from .train import amp_settings, evaluate, get_device
    from .transforms import eval_transform

    if args.recompute_bn is not None and args.recompute_bn < 1:
        raise UsageError(f"--recompute-bn takes a number of batches, at least 1; got {args.recompute_bn}")
    recipe = get_recipe(args.recipe).with_overrides(args.settings)
    dataset = load_dataset(args.data, args.data_dir).subset(args.n_train, args.n_test)
    device = get_device(args.device)
    train_loader, test_loader = make_loaders(dataset, recipe.train_transform(seed=args.seed), eval_transform(), 256,
                                             args.workers, seed=args.seed, device=device)
    model = load_weights(recipe.build_model(), args.weights).to(device)
    amp_dtype = amp_settings(device, args.precision)[0]
    result = evaluate(model, test_loader, device, amp_dtype)
    print(f"{args.recipe} {args.weights}: test accuracy {result['acc']:.2f}% "
          f"({result['samples']} images of {dataset.source}, {args.precision}), loss {result['loss']:.4f}")
    if args.tta:
        tta = flip_tta(model, test_loader, device)
        print(f"  fp32: test accuracy {tta['plain']:.2f}%; with flip TTA {tta['tta']:.2f}% (fixes {tta['fixed']} images, "
              f"breaks {tta['broken']}; an image and its mirror get the same class for {tta['agree']:.2f}%)")
    if args.recompute_bn:
        result = evaluate(recompute_batchnorm(model, train_loader, args.recompute_bn), test_loader, device, amp_dtype)
        print(f"  with batch-norm statistics recomputed from {args.recompute_bn} training batches of 256: "
              f"test accuracy {result['acc']:.2f}%, loss {result['loss']:.4f}")
    return 0


def _inspect(args) -> int:
    from .health import DEAD_BELOW, model_health

    threshold = DEAD_BELOW if args.dead_below is None else args.dead_below
    if not threshold > 0:
        raise UsageError(f"--dead-below must be above 0, got {threshold}")
    health = model_health(args.weights, threshold)
    print(f"{args.weights}: {health.dead} of {health.bn_channels} batch-norm channels dead "
          f"(|gamma| and |beta| < {threshold:g})\n{health.to_markdown()}")
    return 0


def _export(args) -> int:
    from .checkpoint import export_half

    refuse_existing(args.out, overwrite=args.overwrite)
    size = export_half(args.weights, args.out)
    print(f"{args.out}: half-precision state_dict, {size / 1e6:.1f} MB")
    return 0


def _bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


COMMANDS = {"train": _train, "summary": _summary, "lr-find": _lr_find, "evaluate": _evaluate, "export": _export,
            "bench": _bench, "inspect": _inspect}
