"""Shared code for the CIFAR-10 course sessions S8-S11.

Importing ``utils`` is cheap and has no side effects: the names below are loaded from their modules
on first use (so ``import utils`` does not pull in torch, albumentations or grad-cam until needed).
"""
import importlib

_EXPORTS = {
    "dataset": ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "Dataset", "DataUnavailableError", "ImageData"],
    "data": ["load_dataset", "make_synthetic"],
    "loaders": ["make_loaders"],
    "transforms": ["denormalize", "eval_transform", "s9_train_transform", "s10_train_transform"],
    "models": ["CustomResNet", "PreActResNet56", "ResNet18", "ResNet34", "S9Net", "get_model"],
    "train": ["evaluate", "fit", "get_device", "seed_everything", "train_epoch"],
    "history": ["History"],
    "checkpoint": ["load_weights"],
    "health": ["model_health"],
    "recipes": ["RECIPES", "get_recipe"],
    "spec": ["DataSpec", "RunSpec"],
    "run": ["build_run", "train_recipe"],
    "schedules": ["one_cycle", "triangular_lr", "triangular_schedule"],
    "lr_finder": ["find_lr", "load_lr_finder"],
    "gradcam": ["collect_misclassified", "show_misclassified"],
    "inference": ["confusion_matrix", "predict", "recompute_batchnorm"],
    "plots": ["plot_confusion", "plot_curves", "plot_schedule", "plot_zigzag", "show_augmented", "show_samples"],
    # receptive_field() itself is imported from utils.receptive_field: a package attribute of that name
    # is the submodule as soon as anything has imported it.
    "receptive_field": ["summary"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")


def __dir__():
    return __all__
