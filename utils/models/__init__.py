"""CIFAR-10 models of the course, one file per architecture, and a name → model registry."""
import inspect

from torch import nn

from ..errors import UsageError
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


def get_model(name, bn_momentum=None, **kwargs):
    """Build a model by its registry name, e.g. get_model("custom_resnet", dropout=0.1).

    ``bn_momentum``, for any model, is the weight of each batch's statistics in batch norm's running averages, in
    PyTorch's convention: None keeps torch's 0.1; Keras' default ``momentum=0.99`` is 0.01 here. It changes only
    the statistics a test pass uses, never a training step (training normalises with the batch's own).
    """
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    params = inspect.signature(MODELS[name]).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:  # a one-line error for `--set model.x=...`, not a constructor traceback
            raise UsageError(f"model {name!r} takes no argument {', '.join(unknown)}; "
                             f"it takes: {', '.join([*params, 'bn_momentum'])}")
    if bn_momentum is not None and not 0 < bn_momentum <= 0.5:
        # above 0.5 the averages would follow the last few batches: almost surely Keras' convention by mistake
        raise UsageError(f"bn_momentum={bn_momentum}: torch's convention is the weight of each new batch, in (0, 0.5] "
                         f"(0.1 by default); Keras' momentum=0.99 is bn_momentum=0.01")
    model = MODELS[name](**kwargs)
    if bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
    return model
