"""ResNet-18/34 in the CIFAR form (S8).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, adapted to 32x32 inputs
as in kuangliu/pytorch-cifar: a 3x3 stride-1 stem and no stem max-pool, so the four stages
run at 32, 16, 8 and 4 pixels. ResNet18 has 11,173,962 parameters.
"""
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:  # shapes differ: project the input to match
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: stem → 4 stages (64/128/256/512) → global avg pool → linear."""

    def __init__(self, num_blocks, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.layer1 = self._stage(64, 64, num_blocks[0], stride=1)
        self.layer2 = self._stage(64, 128, num_blocks[1], stride=2)
        self.layer3 = self._stage(128, 256, num_blocks[2], stride=2)
        self.layer4 = self._stage(256, 512, num_blocks[3], stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    @staticmethod
    def _stage(c_in, c_out, n, stride):
        # only the first block of a stage changes resolution and width
        blocks = [BasicBlock(c_in, c_out, stride)]
        blocks += [BasicBlock(c_out, c_out) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.stem(x)    # 32x32x64
        x = self.layer1(x)  # 32x32x64
        x = self.layer2(x)  # 16x16x128
        x = self.layer3(x)  # 8x8x256
        x = self.layer4(x)  # 4x4x512
        x = self.pool(x).flatten(1)  # 512
        return self.fc(x)

    def gradcam_layer(self) -> nn.Module:
        """Where Grad-CAM looks: the last basic block (4x4), before global pooling."""
        return self.layer4[-1]


def ResNet18(num_classes=10):
    return ResNet([2, 2, 2, 2], num_classes)


def ResNet34(num_classes=10):
    return ResNet([3, 4, 6, 3], num_classes)
