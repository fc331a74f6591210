"""The S9 "C1 C2 C3 C4 + output" network: advanced convolutions, no max-pooling.

ERA V1 Session 9 assignment: four convolution blocks, each of C1-C3 ending in a stride-2
3x3 conv instead of a max-pool (32 → 16 → 8 → 4), a dilated conv in C2, depthwise-separable
convs (MobileNet, Howard et al. 2017) in C3 and C4, global average pooling, and a 1x1 conv
to 10 logits (use with nn.CrossEntropyLoss). 181,970 parameters (< 200k).

The 32x32 stage is kept narrow because it dominates compute; the parameters go to the
8x8 and 4x4 stages, where separable convs make wide layers affordable.

Receptive field (r_out = r_in + (k_eff - 1) * j_in, k_eff = d * (k - 1) + 1, j_out = j_in * s;
a separable conv counts as its depthwise k x k, the pointwise 1x1 adds nothing):

    layer            c_in→c_out  n_in k s p d n_out  j_in j_out  r_in r_out
    c1 conv          3→24         32  3 1 1 1  32      1   1       1    3
    c1 conv          24→32        32  3 1 1 1  32      1   1       3    5
    c1 conv s2       32→32        32  3 2 1 1  16      1   2       5    7
    c2 conv          32→48        16  3 1 1 1  16      2   2       7   11
    c2 conv dilated  48→48        16  3 1 2 2  16      2   2      11   19
    c2 conv s2       48→48        16  3 2 1 1   8      2   4      19   23
    c3 sep           48→128        8  3 1 1 1   8      4   4      23   31
    c3 sep           128→128       8  3 1 1 1   8      4   4      31   39
    c3 sep s2        128→128       8  3 2 1 1   4      4   8      39   47
    c4 sep           128→192       4  3 1 1 1   4      8   8      47   63
    c4 sep           192→192       4  3 1 1 1   4      8   8      63   79
    gap (4x4)        192           4  4 1 0 1   1      8   8      79  103

The last conv sees 79x79 pixels (> 44, the whole 32x32 image); with GAP counted as a
4x4 window the total is 103.
"""
from torch import nn

from .layers import conv_bn, sep_conv_bn


class S9Net(nn.Module):
    def __init__(self, dropout=0.05, num_classes=10):
        super().__init__()
        self.c1 = nn.Sequential(
            conv_bn(3, 24, dropout=dropout),
            conv_bn(24, 32, dropout=dropout),
            conv_bn(32, 32, stride=2, dropout=dropout),
        )
        self.c2 = nn.Sequential(
            conv_bn(32, 48, dropout=dropout),
            conv_bn(48, 48, padding=2, dilation=2, dropout=dropout),  # RF +8 at the cost of a 3x3
            conv_bn(48, 48, stride=2, dropout=dropout),
        )
        self.c3 = nn.Sequential(
            sep_conv_bn(48, 128, dropout=dropout),
            sep_conv_bn(128, 128, dropout=dropout),
            sep_conv_bn(128, 128, stride=2, dropout=dropout),
        )
        self.c4 = nn.Sequential(
            sep_conv_bn(128, 192, dropout=dropout),
            sep_conv_bn(192, 192),  # no dropout right before the classifier
        )
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Conv2d(192, num_classes, 1)

    def forward(self, x):
        x = self.c1(x)   # 16x16x32
        x = self.c2(x)   # 8x8x48
        x = self.c3(x)   # 4x4x128
        x = self.c4(x)   # 4x4x192
        x = self.gap(x)  # 1x1x192
        return self.out(x).flatten(1)

    def gradcam_layer(self) -> nn.Module:
        """Where Grad-CAM looks: the last convolution block (4x4), before global pooling."""
        return self.c4
