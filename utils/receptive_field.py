"""Model summary (torchsummary) and the layer-by-layer receptive-field table of S9.

The receptive field follows the usual recurrence (Araujo et al., "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019), with k_eff = d * (k - 1) + 1:

    n_out from the layer's actual output,   j_out = j_in * s,   r_out = r_in + (k_eff - 1) * j_in

It is traced, not declared: a dummy image goes through the model with forward hooks on every
Conv2d / MaxPool2d / AvgPool2d / AdaptiveAvgPool2d / AdaptiveMaxPool2d, and rows come out in forward
execution order. Depthwise and grouped convs count like any conv (a separable conv: its k x k depthwise
part grows the field, the 1x1 pointwise part does not). Only ``nn.Module`` layers are seen; pooling
written as ``F.max_pool2d`` inside ``forward`` is invisible.

Branches: each layer's (j_in, r_in) is that of the tensor actually fed to it, carried through every
other op (BN, ReLU, additions, concatenations) by a ``TorchFunctionMode``; where branches merge, the
larger receptive field wins. So a residual net reports the longest path (the residual branches, not
the skips), and a strided 1x1 shortcut that runs after its block's convs does not double the jump.
``total`` is the theoretical receptive field of the last layer; it can exceed the 32-pixel image.
Square kernels and images are assumed (the height is reported).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
from dataclasses import dataclass, fields

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torchsummary import summary as _torchsummary

from .errors import UsageError
from .inference import eval_mode, model_device

TRACED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass
class Stage:
    name: str            # a top-level child of the model: "stem", "stage1", "fc", ...
    output_shape: tuple  # of one image, e.g. (64, 32, 32)
    params: int


@dataclass
class ModelSummary:
    text: str               # torchsummary's table, as it prints it
    total_params: int
    trainable_params: int
    stages: list = dataclasses.field(default_factory=list)  # one Stage per top-level child that ran

    def __str__(self):
        return self.text

    def stage_table(self) -> str:
        """A line per top-level child: the compact view of a deep net (``print(summary)`` shows every layer)."""
        lines = ["| stage | output | parameters |", "|---|---|---:|"]
        lines += [f"| {s.name} | {' x '.join(map(str, s.output_shape))} | {s.params:,} |" for s in self.stages]
        return "\n".join(lines + [f"| **total** | | **{self.total_params:,}** |"])

    def _repr_markdown_(self):  # a notebook shows the stage table; print() gives torchsummary's full one
        return self.stage_table()

    def __repr__(self):
        return f"ModelSummary({len(self.stages)} stages, {self.total_params:,} parameters)"


def summary(model: nn.Module, input_size=(3, 32, 32), device=None) -> ModelSummary:
    """torchsummary's table for ``model``, which must already be on ``device`` (default: where it is).

    torchsummary defaults to ``device="cuda"`` (a CPU model on a GPU machine then fails) and accepts only
    the strings "cuda"/"cpu", so the device type is passed explicitly. The parameter counts are taken from
    ``model.parameters()``: torchsummary counts only ``weight``/``bias`` attributes and counts a module
    used twice twice. Nothing is printed; ``print(result)`` shows the table, ``result.stage_table()`` (what a
    notebook displays) a line per top-level child.
    """
    device = model_device(model) if device is None else torch.device(device)
    out = io.StringIO()
    shapes = {}  # top-level child -> its output's shape for one image, from its first call

    def keep_shape(name):
        def hook(module, inputs, output):
            shapes.setdefault(name, tuple(output.shape[1:]))  # returns None: the output is left as it is
        return hook

    handles = [child.register_forward_hook(keep_shape(name)) for name, child in model.named_children()]
    try:
        with eval_mode(model), torch.no_grad(), contextlib.redirect_stdout(out):
            _torchsummary(model, tuple(input_size), device=device.type)
    finally:
        for handle in handles:
            handle.remove()
    stages = [Stage(name, shapes[name], sum(p.numel() for p in child.parameters()))
              for name, child in model.named_children() if name in shapes]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelSummary(out.getvalue(), total, trainable, stages)


@dataclass
class RFRow:
    name: str     # module name in the model, e.g. "c2.1.0"
    kind: str     # Conv2d, MaxPool2d, ...
    n_in: int
    k: int
    s: int
    p: int
    d: int
    n_out: int
    j_in: int
    j_out: int
    r_in: int
    r_out: int


@dataclass
class RFTable:
    rows: list

    @property
    def total(self) -> int:
        return max(row.r_out for row in self.rows)

    def to_markdown(self) -> str:
        names = [f.name for f in fields(RFRow)]
        lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
        lines += ["| " + " | ".join(str(getattr(row, n)) for n in names) + " |" for row in self.rows]
        return "\n".join(lines)

    def _repr_markdown_(self):  # a notebook renders the table, not its pipes
        return self.to_markdown()

    def __repr__(self):
        return f"RFTable({len(self.rows)} layers, receptive field {self.total})"


def _first(value) -> int:
    return value[0] if isinstance(value, (tuple, list)) else value


def _geometry(module: nn.Module, n_in: int, n_out: int) -> tuple[int, int, int, int]:
    """(k, s, p, d) along the height."""
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        # A global pool is one window over the whole map (stride 1, as in the course's tables);
        # a smaller adaptive output is read as the equivalent fixed window.
        s = 1 if n_out == 1 else n_in // n_out
        return n_in - (n_out - 1) * s, s, 0, 1
    k, s, d = _first(module.kernel_size), _first(module.stride), _first(getattr(module, "dilation", 1))
    p = module.padding
    if isinstance(p, str):  # Conv2d(padding="same" | "valid")
        p = (d * (k - 1)) // 2 if p == "same" else 0
    return k, s, _first(p), d


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


class _CarryField(TorchFunctionMode):
    """Gives every op's output the (j, r) of its input with the largest receptive field."""

    def __init__(self, field: dict):
        super().__init__()
        self.field = field  # id(tensor) -> (tensor, j, r); holding the tensor keeps its id unique

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        known = [self.field[id(t)] for t in _tensors((args, kwargs)) if id(t) in self.field]
        if known and isinstance(out, torch.Tensor):
            _, j, r = max(known, key=lambda entry: entry[2])
            self.field[id(out)] = (out, j, r)
        return out


def receptive_field(model: nn.Module, input_size=(3, 32, 32)) -> RFTable:
    """Trace ``model`` on one dummy image and return its receptive-field table (see the module docstring)."""
    device = model_device(model)
    x = torch.zeros(1, *input_size, device=device)
    field = {id(x): (x, 1, 1)}  # the image: one pixel sees itself
    rows, handles = [], []

    def hook(module, inputs, output):
        _, j_in, r_in = field.get(id(inputs[0]), (None, 1, 1))
        n_in, n_out = inputs[0].shape[-2], output.shape[-2]
        k, s, p, d = _geometry(module, n_in, n_out)
        j_out, r_out = j_in * s, r_in + (d * (k - 1)) * j_in
        field[id(output)] = (output, j_out, r_out)
        rows.append(RFRow(names[module], type(module).__name__, n_in, k, s, p, d, n_out, j_in, j_out, r_in, r_out))

    names = {m: name for name, m in model.named_modules() if isinstance(m, TRACED)}
    for module in names:
        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad(), _CarryField(field):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    if not rows:
        raise UsageError("no Conv2d or pooling module ran in the forward pass; nothing to trace")
    return RFTable(rows)
