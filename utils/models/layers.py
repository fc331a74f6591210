"""Small building blocks shared by the CIFAR-10 models.

`conv_bn` is the Conv → BN → ReLU unit of David Page's cifar10-fast; `SeparableConv2d`
is the depthwise-separable convolution of MobileNet (Howard et al., 2017).
"""
from torch import nn


def conv_bn(c_in, c_out, kernel_size=3, stride=1, padding=1, dilation=1,
            pool=False, dropout=0.0):
    """Conv(bias=False) → [MaxPool 2] → BN → ReLU → [Dropout2d].

    The conv has no bias because BN's shift makes it redundant. `pool=True` puts
    the max-pool between conv and BN, as in the custom ResNet of S10.
    """
    layers = [nn.Conv2d(c_in, c_out, kernel_size, stride, padding, dilation, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class SeparableConv2d(nn.Sequential):
    """Depthwise k x k conv (one filter per channel) followed by a pointwise 1x1 conv.

    Costs c_in*k*k + c_in*c_out weights instead of c_in*c_out*k*k.
    """

    def __init__(self, c_in, c_out, kernel_size=3, stride=1, padding=1, dilation=1):
        super().__init__(
            nn.Conv2d(c_in, c_in, kernel_size, stride, padding, dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )


def sep_conv_bn(c_in, c_out, kernel_size=3, stride=1, padding=1, dilation=1, dropout=0.0):
    """SeparableConv2d → BN → ReLU → [Dropout2d]."""
    layers = [SeparableConv2d(c_in, c_out, kernel_size, stride, padding, dilation),
              nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)
