"""The S10/S11 "custom ResNet": David Page's ResNet-9 layout (cifar10-fast, DAWNBench 2018).

prep → layer1 (+res1) → layer2 → layer3 (+res2) → MaxPool 4 → fc; 6,573,130 parameters.
The model returns raw logits: train it with nn.CrossEntropyLoss, which applies the
log-softmax the assignment's diagram ends with.

``logit_scale`` multiplies the logits, as Page's net does (x 0.125): untrained, the max-pooled features give
logits large enough for a loss well above chance's ln 10 = 2.30, and large early steps grow the conv weights,
which behind batch norm lowers the effective learning rate until weight decay shrinks them again.
"""
from torch import nn

from .layers import conv_bn


def residual(c, dropout=0.0):
    """ResBlock of the diagram: (Conv-BN-ReLU) x 2 at constant width; the skip is added in forward."""
    return nn.Sequential(conv_bn(c, c, dropout=dropout), conv_bn(c, c, dropout=dropout))


class CustomResNet(nn.Module):
    def __init__(self, num_classes=10, dropout=0.0, logit_scale=1.0):
        super().__init__()
        self.logit_scale = logit_scale
        self.prep = conv_bn(3, 64, dropout=dropout)
        self.layer1 = conv_bn(64, 128, pool=True, dropout=dropout)
        self.res1 = residual(128, dropout)
        self.layer2 = conv_bn(128, 256, pool=True, dropout=dropout)
        self.layer3 = conv_bn(256, 512, pool=True, dropout=dropout)
        self.res2 = residual(512, dropout)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.prep(x)          # 32x32x64
        x = self.layer1(x)        # 16x16x128
        x = x + self.res1(x)
        x = self.layer2(x)        # 8x8x256
        x = self.layer3(x)        # 4x4x512
        x = x + self.res2(x)
        x = self.pool(x).flatten(1)  # 512
        return self.fc(x) * self.logit_scale

    def gradcam_layer(self) -> nn.Module:
        """Where Grad-CAM looks: the residual branch of layer 3 (4x4); its gradient equals that of layer3 + res2."""
        return self.res2
