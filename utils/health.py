"""A trained network's health, read from its weights alone: dead batch-norm channels, BN scales, weight norms.

A BN channel whose scale (gamma) and shift (beta) have both collapsed to about 0 outputs a constant 0: it
carries no signal forward and, after a ReLU, gets no gradient back, so weight decay keeps shrinking it. A
network can lose a large part of its width that way and still train, only worse (S11's ResNet-56 lost 42%).

Everything is read from a state_dict, so any model of the course (or a checkpoint of one) works without
building it: a BN layer is a key with a ``running_mean`` beside its ``weight``, a conv or linear layer a
``weight`` of two or more dimensions, and a stage is the first part of the key (``prep``, ``layer1``, ``stage3``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

DEAD_BELOW = 0.01  # |gamma| and |beta| both below this: the channel is constant 0 for every input


@dataclass
class StageHealth:
    stage: str
    bn_channels: int
    dead: int
    gamma_median: float   # of |gamma|, over the stage's BN channels
    gamma_p10: float
    gamma_p90: float
    weight_norm: float | None  # L2 norm of all the stage's conv and linear weights together; None: it has none

    @property
    def dead_fraction(self) -> float:
        return self.dead / self.bn_channels if self.bn_channels else 0.0


@dataclass(repr=False)
class Health:
    stages: list[StageHealth]

    @property
    def bn_channels(self) -> int:
        return sum(s.bn_channels for s in self.stages)

    @property
    def dead(self) -> int:
        return sum(s.dead for s in self.stages)

    def to_markdown(self) -> str:
        rows = ["| stage | BN channels | dead | dead % | median abs(gamma) | 10-90% abs(gamma) | weight norm |",
                "|---|---:|---:|---:|---:|---|---:|"]
        for s in self.stages:
            gamma = (f"{s.gamma_median:.3f} | {s.gamma_p10:.3f}-{s.gamma_p90:.3f}" if s.bn_channels
                     else "- | -")
            norm = "-" if s.weight_norm is None else f"{s.weight_norm:.2f}"
            rows.append(f"| {s.stage} | {s.bn_channels} | {s.dead} | {100 * s.dead_fraction:.1f} | {gamma} | {norm} |")
        total = 100 * self.dead / self.bn_channels if self.bn_channels else 0.0
        rows.append(f"| **all** | {self.bn_channels} | {self.dead} | {total:.1f} | | | |")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        return f"{self.dead} of {self.bn_channels} batch-norm channels dead\n\n{self.to_markdown()}"

    def _repr_markdown_(self) -> str:  # a notebook cell ending in model_health(...) shows the table
        return repr(self)


def model_health(source: torch.nn.Module | dict | str | os.PathLike, dead_below: float = DEAD_BELOW) -> Health:
    """Per-stage health of a model, a state_dict, or a weights/checkpoint file (``python -m utils inspect``)."""
    if isinstance(source, torch.nn.Module):
        state = source.state_dict()
    elif isinstance(source, dict):
        state = source
    else:
        from .checkpoint import read_state_dict

        state = read_state_dict(source)
    state = {key.removeprefix("_orig_mod."): value for key, value in state.items()}  # torch.compile'd models
    stages: dict[str, dict] = {}
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        stage = stages.setdefault(key.split(".")[0], {"gamma": [], "beta": [], "weights": []})
        if name == "weight" and f"{prefix}.running_mean" in state:
            stage["gamma"].append(value.float().abs().flatten())
            stage["beta"].append(state[f"{prefix}.bias"].float().abs().flatten())
        elif name == "weight" and value.dim() >= 2:
            stage["weights"].append(value.float().flatten())
    result = []
    for name, parts in stages.items():
        if not parts["gamma"] and not parts["weights"]:
            continue
        weight_norm = float(torch.cat(parts["weights"]).norm()) if parts["weights"] else None
        if parts["gamma"]:
            gamma, beta = torch.cat(parts["gamma"]), torch.cat(parts["beta"])
            dead = int(((gamma < dead_below) & (beta < dead_below)).sum())
            p10, median, p90 = (float(q) for q in torch.quantile(gamma, torch.tensor([0.1, 0.5, 0.9])))
            result.append(StageHealth(name, gamma.numel(), dead, median, p10, p90, weight_norm))
        else:
            result.append(StageHealth(name, 0, 0, float("nan"), float("nan"), float("nan"), weight_norm))
    return Health(result)
