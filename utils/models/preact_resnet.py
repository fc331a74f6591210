"""Pre-activation ResNet-56 v2 for CIFAR-10 (S11, second superconvergence recipe).

He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016. The layout follows
`resnet_v2` of the Keras example `cifar10_resnet.py`, which the EVA4 Assignment 4B submission trained as
"ResNet56v2": bottleneck units (BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1), depth = 9n + 2, so
depth 56 gives n = 6 units per stage; stages widen 16 → 64, 64 → 128, 128 → 256 (the 3x3
conv works at a quarter of the stage width) and downsample at the start of stages 2 and 3.

Differences from the Keras model, kept on purpose: convs have no bias (each is followed by
a BN, directly or in the next unit), and PyTorch counts BN running statistics as buffers,
not parameters, so the parameter count is lower than Keras' "Total params". The template's
initialisation is an option (``init="he_normal"``); torch's default is kept unless asked for.
"""
import math

from torch import nn

from ..errors import UsageError


def bn_relu_conv(c_in, c_out, kernel_size=1, stride=1, preact=True):
    """BN → ReLU → Conv: the v2 ordering. `preact=False` gives the bare conv."""
    layers = [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)] if preact else []
    layers.append(nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, bias=False))
    return nn.Sequential(*layers)


class PreActBottleneck(nn.Module):
    """x + F(x), with F = 1x1 (c_mid) → 3x3 (c_mid) → 1x1 (c_out), each pre-activated.

    The first unit of a stage projects the shortcut with a 1x1 conv (stride 2 from stage 2 on).
    The very first unit skips its pre-activation: the stem already ended in BN-ReLU.
    """

    def __init__(self, c_in, c_mid, c_out, stride=1, preact=True):
        super().__init__()
        self.residual = nn.Sequential(
            bn_relu_conv(c_in, c_mid, 1, stride, preact),
            bn_relu_conv(c_mid, c_mid, 3),
            bn_relu_conv(c_mid, c_out, 1),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        return self.shortcut(x) + self.residual(x)


class PreActResNet(nn.Module):
    """stem (conv-BN-ReLU, 16) → 3 bottleneck stages → BN-ReLU → global avg pool → linear."""

    def __init__(self, depth=56, num_classes=10, init="torch"):
        super().__init__()
        if (depth - 2) % 9:
            raise UsageError(f"depth must be 9n + 2 (e.g. 56, 110), got {depth}")
        if init not in INITS:
            raise UsageError(f"init {init!r}: choose one of {', '.join(INITS)}")
        n = (depth - 2) // 9
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.stage1 = self._stage(16, 64, n, stride=1, preact=False)
        self.stage2 = self._stage(64, 128, n, stride=2)
        self.stage3 = self._stage(128, 256, n, stride=2)
        self.head = nn.Sequential(nn.BatchNorm2d(256), nn.ReLU(inplace=True))  # v2: BN-ReLU before pooling
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, num_classes)
        if init == "he_normal":
            he_normal_(self)

    @staticmethod
    def _stage(c_in, c_out, n, stride, preact=True):
        # bottleneck width is the stage's input width: 16, 64, 128
        units = [PreActBottleneck(c_in, c_in, c_out, stride, preact)]
        units += [PreActBottleneck(c_out, c_in, c_out) for _ in range(n - 1)]
        return nn.Sequential(*units)

    def forward(self, x):
        x = self.stem(x)    # 32x32x16
        x = self.stage1(x)  # 32x32x64
        x = self.stage2(x)  # 16x16x128
        x = self.stage3(x)  # 8x8x256
        x = self.head(x)
        x = self.pool(x).flatten(1)  # 256
        return self.fc(x)

    def gradcam_layer(self) -> nn.Module:
        """Where Grad-CAM looks: the last bottleneck (8x8), before the final BN-ReLU and pooling."""
        return self.stage3[-1]


INITS = ("torch", "he_normal")


def he_normal_(model: nn.Module) -> None:
    """Keras' ``he_normal`` on every conv and linear kernel, biases zero: a normal truncated at 2 standard
    deviations and widened so that its standard deviation is sqrt(2 / fan_in).

    Why it could matter: torch's default gives kernels a standard deviation of sqrt(1 / (3 fan_in)), sqrt(6) =
    2.45x smaller. Every conv feeds a batch norm, which undoes a kernel's scale, so the scale only sets how far a
    step moves it: the effective learning rate goes as lr / |w|^2, 6x higher at the start under torch's default.
    Under weight decay the difference was all but gone by epoch 12; the s11-resnet56 recipe uses this init with
    no decay, as its reference did (S11/README.md).
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            std = math.sqrt(2.0 / fan_in) / 0.87962566103423978  # the std of a unit normal cut at +-2
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def PreActResNet56(num_classes=10, init="torch"):
    return PreActResNet(56, num_classes, init)
