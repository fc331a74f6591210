"""CIFAR-10 models of the course, one file per architecture, and a name → model registry."""
import inspect

from .custom_resnet import CustomResNet
from .layers import SeparableConv2d, conv_bn, sep_conv_bn
from .preact_resnet import PreActResNet, PreActResNet56
from .resnet import BasicBlock, ResNet, ResNet18, ResNet34
from .s9_net import S9Net

__all__ = [
    "BasicBlock", "CustomResNet", "PreActResNet", "PreActResNet56", "ResNet", "ResNet18",
    "ResNet34", "S9Net", "SeparableConv2d", "conv_bn", "sep_conv_bn", "MODELS", "get_model",
]

MODELS = {
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "s9": S9Net,
    "custom_resnet": CustomResNet,
    "preact_resnet56": PreActResNet56,
}


def get_model(name, **kwargs):
    """Build a model by its registry name, e.g. get_model("custom_resnet", dropout=0.1)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    params = inspect.signature(MODELS[name]).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:  # a one-line error for `--set model.x=...`, not a constructor traceback
            raise ValueError(f"model {name!r} takes no argument {', '.join(unknown)}; "
                             f"it takes: {', '.join(params) or 'none'}")
    return MODELS[name](**kwargs)
