"""``python -m utils``: train a recipe, print a model summary, run the LR range test, evaluate weights."""
from __future__ import annotations

import argparse
import sys

from .recipes import RECIPES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p):
        p.add_argument("--data", choices=["cifar10", "synthetic"], default="cifar10",
                       help="cifar10: torchvision's, or the image folder/tarball given by --data-dir")
        p.add_argument("--data-dir", help="torchvision CIFAR-10 folder, or an image folder/tarball "
                                          "(default: $CIFAR10_DIR, else ./data)")
        p.add_argument("--n-train", type=int, help="use a random subset of this many training images")
        p.add_argument("--n-test", type=int, help="use a random subset of this many test images")
        p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
        p.add_argument("--workers", type=int, help="data loader workers (default: min(2, cores))")

    train = sub.add_parser("train", help="train a recipe and write a run folder")
    train.add_argument("recipe", choices=list(RECIPES))
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    data_options(train)
    train.add_argument("--out", help="run folder (default: runs/<recipe>)")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--limit-batches", type=int, help="at most K batches per epoch (smoke runs)")
    train.add_argument("--validation", type=int, default=0,
                       help="hold out N training images and evaluate on them instead of the test set")
    train.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="settings",
                       help="change one recipe field for this run, e.g. --set weight_decay=1e-4, or a model argument, "
                            "e.g. --set model.dropout=0 (repeatable)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    train.add_argument("--no-fast", action="store_true",
                       help="on CUDA, use the albumentations DataLoader instead of batched GPU augmentation")
    train.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster steps)")

    summary = sub.add_parser("summary", help="model summary, parameter count and receptive field")
    summary.add_argument("recipe", choices=list(RECIPES))

    lr_find = sub.add_parser("lr-find", help="LR range test on the training set; saves the plot")
    lr_find.add_argument("recipe", choices=list(RECIPES))
    lr_find.add_argument("--num-iter", type=int, default=100)
    lr_find.add_argument("--batch-size", type=int)
    lr_find.add_argument("--out", default="lr_finder.png")
    data_options(lr_find)

    from .bench import add_arguments as bench_arguments

    bench_arguments(sub.add_parser("bench", help="data-pipeline and training throughput, side by side"))

    evaluate = sub.add_parser("evaluate", help="test accuracy of saved weights")
    evaluate.add_argument("recipe", choices=list(RECIPES))
    evaluate.add_argument("--weights", required=True, help="a state_dict or checkpoint file")
    data_options(evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .data import DataUnavailableError
    from .train import CheckpointError, NonFiniteLossError

    try:
        return COMMANDS[args.command](args)
    except (DataUnavailableError, CheckpointError, NonFiniteLossError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from .run import train_recipe

    history, out = train_recipe(args.recipe, args.epochs, args.batch_size, args.data, args.data_dir, args.out,
                                args.resume, args.seed, args.limit_batches, args.n_train, args.n_test,
                                args.validation, args.device, args.workers, fast=False if args.no_fast else None,
                                compile_model=args.compile, progress=not args.no_progress,
                                settings=args.settings)
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


def _lr_find(args) -> int:
    from .data import load_dataset, make_loaders
    from .lr_finder import find_lr
    from .recipes import get_recipe
    from .transforms import eval_transform

    recipe = get_recipe(args.recipe).scaled(batch_size=args.batch_size)
    dataset = load_dataset(args.data, args.data_dir).subset(args.n_train, args.n_test)
    train_loader, _ = make_loaders(dataset, recipe.train_transform(0), eval_transform(), recipe.batch_size,
                                   args.workers, device=args.device)
    model = recipe.build_model()
    found = find_lr(model, recipe.build_optimizer(model, lr=1e-7), recipe.criterion(), train_loader,
                    num_iter=args.num_iter, device=args.device, save_path=args.out)
    print(f"lr_max {found.lr_max:.4g} (steepest descent), lr_min {found.lr_min:.4g}; plot: {args.out}")
    return 0


def _evaluate(args) -> int:
    from .data import load_dataset, make_loaders
    from .recipes import get_recipe
    from .train import evaluate, get_device, load_weights
    from .transforms import eval_transform

    recipe = get_recipe(args.recipe)
    dataset = load_dataset(args.data, args.data_dir).subset(args.n_train, args.n_test)
    device = get_device(args.device)
    _, test_loader = make_loaders(dataset, eval_transform(), eval_transform(), 256, args.workers, device=device)
    model = load_weights(recipe.build_model(), args.weights).to(device)
    result = evaluate(model, test_loader, device)
    print(f"{args.recipe} {args.weights}: test accuracy {result['acc']:.2f}% "
          f"({result['samples']} images of {dataset.source}), loss {result['loss']:.4f}")
    return 0


def _bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


COMMANDS = {"train": _train, "summary": _summary, "lr-find": _lr_find, "evaluate": _evaluate, "bench": _bench}
