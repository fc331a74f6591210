"""Pin the facts of utils.models: output shapes, parameter counts, gradient flow and the
S9/S10 assignment constraints."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.models import MODELS, CustomResNet, S9Net, get_model

# ResNet18 and CustomResNet are the counts the assignments state; the others were computed
# once from these implementations and pinned so that an accidental change fails loudly.
PARAM_COUNTS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "s9": 181_970,
    "custom_resnet": 6_573_130,
    # Keras' resnet_v2(depth=56) reports 1,673,738 "Total params" for the same layout: that adds
    # conv biases (5,648) and BN running mean/var (10,400), which PyTorch keeps as buffers.
    "preact_resnet56": 1_657_690,
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_output_shape(name):
    model = get_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", MODELS)
def test_param_count(name):
    assert n_params(get_model(name)) == PARAM_COUNTS[name]


def test_s9_under_budget():
    assert n_params(S9Net()) < 200_000


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = get_model(name).train()
    loss = F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.randint(0, 10, (4,)))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_s9_uses_no_pooling_but_gap():
    model = S9Net()
    pools = [m for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert pools == []
    assert isinstance(model.gap, nn.AdaptiveAvgPool2d)


def test_s9_has_dilated_and_depthwise_separable_convs():
    convs = [m for m in S9Net().modules() if isinstance(m, nn.Conv2d)]
    assert any(c.dilation[0] > 1 for c in convs)
    separable = [
        (dw, pw) for dw, pw in zip(convs, convs[1:])
        if dw.groups == dw.in_channels > 1 and pw.kernel_size == (1, 1) and pw.in_channels == dw.out_channels
    ]
    assert separable


def test_s9_receptive_field():
    # Measured, not computed: with positive weights and inputs every ReLU passes, so the
    # input pixels with a non-zero gradient are exactly one output unit's receptive field.
    model = S9Net().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.abs_()
    x = torch.ones(1, 3, 128, 128, requires_grad=True)  # large enough to avoid the borders
    features = nn.Sequential(model.c1, model.c2, model.c3, model.c4)(x)  # 1x192x16x16
    features[0, :, 8, 8].sum().backward()
    rows = x.grad[0].abs().sum(dim=(0, 2)).nonzero()
    assert rows.max() - rows.min() + 1 == 79


def test_custom_resnet_layout():
    model = CustomResNet()
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_get_model_unknown_name():
    with pytest.raises(ValueError, match="resnet18.*custom_resnet"):
        get_model("vgg16")


def test_get_model_passes_kwargs():
    assert get_model("custom_resnet", dropout=0.1).prep[-1].p == 0.1


def test_bn_momentum_sets_every_batch_norm_and_only_the_running_statistics():
    # Keras' BatchNormalization(momentum=0.99) weighs each batch 0.01: torch's momentum=0.01 (the ResNet-56's template)
    torch.manual_seed(0)
    default = get_model("preact_resnet56")
    torch.manual_seed(0)
    keras = get_model("preact_resnet56", bn_momentum=0.01)
    norms = [m for m in keras.modules() if isinstance(m, nn.BatchNorm2d)]
    # stem + 3 per bottleneck unit (18 units, the very first without its pre-activation) + head
    assert len(norms) == 1 + 3 * 18 - 1 + 1 and {m.momentum for m in norms} == {0.01}
    assert {m.momentum for m in default.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
    x = torch.randn(8, 3, 32, 32)
    assert torch.equal(default.train()(x), keras.train()(x))  # a training step normalises with the batch's own
    # ... but the running mean moves a tenth as far from its initial zeros
    assert torch.allclose(default.stem[1].running_mean, 10 * keras.stem[1].running_mean, atol=1e-6)
    assert keras.stem[1].running_mean.abs().max() > 0
    with pytest.raises(ValueError, match="Keras' momentum=0.99 is bn_momentum=0.01"):
        get_model("resnet18", bn_momentum=0.99)  # Keras' number in torch's convention: each batch would weigh 99%


def test_he_normal_init_gives_every_kernel_the_keras_templates_scale():
    # Keras' he_normal: std sqrt(2 / fan_in), nothing beyond 2 of the widened normal's stds; torch's default is
    # sqrt(6) = 2.45x smaller (the s11-resnet56 recipe asks for he_normal)
    torch.manual_seed(0)
    default, keras = get_model("preact_resnet56"), get_model("preact_resnet56", init="he_normal")
    kernels = [(name, p) for name, p in keras.named_parameters() if p.dim() > 1]
    assert len(kernels) == 1 + 3 * 18 + 3 + 1  # stem, 3 convs per unit, a shortcut projection per stage, fc
    for name, weight in kernels:
        target = (2.0 / weight[0].numel()) ** 0.5
        rel = 3 / weight.numel() ** 0.5  # 5 standard errors of a sample std (0.6 / sqrt(n) for these shapes)
        assert weight.std().item() == pytest.approx(target, rel=rel), name
        assert weight.abs().max().item() <= 2 * target / 0.87962566103423978 + 1e-6, name
        torch_std = dict(default.named_parameters())[name].std().item()
        assert torch_std == pytest.approx(target / 6 ** 0.5, rel=rel), name
    assert keras.fc.bias.abs().max() == 0
    assert sum(p.numel() for p in keras.parameters()) == PARAM_COUNTS["preact_resnet56"]
    with pytest.raises(ValueError, match="init 'glorot'"):
        get_model("preact_resnet56", init="glorot")
