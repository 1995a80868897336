"""The project's typed config: every trial's hyperparameters, validated once at the edge.

Unknown keys are refused with the valid ones listed (``extra="forbid"``). Epsilons and noise sigmas are
on the [0, 1] pixel scale; each becomes a metric key with the value x 1000 rounded (``acc_pgd_eps100`` for
eps 0.1, ``acc_pgd_eps31`` for 8/255), so the keys carry no dots.

``variant`` is a shorthand for a sweep's grid: "ACTIVATION[/FRAC[/PLACEMENT]]" ("relu", "topk/0.05",
"topk_global/0.1/every_relu"), so that one grid key spans ReLU and the top-k fractions without running the
ReLU network once per fraction, and ``orch compare --group-by`` groups the seeds of each.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from topk.layers import Surrogate
from topk.networks import ActivationName, NetworkName, Placement

__all__ = ["TopKConfig", "milli", "parse_variant"]

_ACTIVATIONS = ("relu", "topk", "topk_global")
_PLACEMENTS = ("stages", "every_relu")


def milli(value: float) -> int:
    """0.1 -> 100, 8/255 -> 31: the integer in a metric key."""
    return int(round(value * 1000))


def parse_variant(variant: str) -> dict[str, Any]:
    """ "topk/0.05/every_relu" -> {activation, frac, placement}; "relu" -> {activation}."""
    parts = variant.split("/")
    fields: dict[str, Any] = {"activation": parts[0]}
    try:
        if parts[0] not in _ACTIVATIONS or len(parts) > 3 or (parts[0] == "relu" and len(parts) > 1):
            raise ValueError
        if len(parts) > 1:
            fields["frac"] = float(parts[1])
        if len(parts) > 2:
            if parts[2] not in _PLACEMENTS:
                raise ValueError
            fields["placement"] = parts[2]
    except ValueError:
        raise ValueError(
            f"variant {variant!r} is not relu or ACTIVATION/FRAC[/PLACEMENT] with ACTIVATION in {', '.join(_ACTIVATIONS[1:])} "
            f"and PLACEMENT in {', '.join(_PLACEMENTS)}, e.g. topk/0.05"
        ) from None
    return fields


class TopKConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    dataset: Literal["digits", "cifar10"] = "digits"
    data_root: str | None = Field(None, description="folder of the CIFAR-10 python batches (cifar10 only)")
    train_subset: int | None = Field(None, ge=10, description="the first N training images (the digits split is shuffled)")
    test_subset: int | None = Field(None, ge=10)
    augment: bool | None = Field(None, description="random crop (pad 4) + flip; default: on for cifar10 only")
    # network and activation
    variant: str | None = Field(None, description="shorthand: relu, topk/0.05, topk_global/0.1/every_relu")
    network: NetworkName | None = Field(None, description="default: small_cnn for digits, preact_resnet18 for cifar10")
    width: int | None = Field(None, ge=2, le=256, description="first-stage channels; default 32 (small_cnn) / 64 (resnet)")
    activation: ActivationName = "relu"
    frac: float = Field(0.1, gt=0.0, le=1.0, description="top-k keeps k = max(1, int(C * frac)) channels")
    placement: Placement = "stages"
    boost_strength: float = Field(0.0, ge=0.0, description="Numenta boosting; 0 = off")
    boost_strength_factor: float = Field(0.9, gt=0.0, le=1.0, description="boost strength x this after every epoch")
    duty_cycle_period: int = Field(1000, ge=1)
    k_inference_factor: float = Field(1.0, ge=1.0, description="k x this at evaluation (Numenta: 1.5)")
    # training (the original: SGD momentum 0.9, wd 5e-4, lr 0.1, batch 128, step LR)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(500, ge=1)
    lr: float = Field(0.05, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # evaluation
    epsilons: list[float] = Field([0.05, 0.1, 0.2], description="L-inf radii on the [0, 1] scale")
    fgsm: bool = True
    pgd_steps: int = Field(10, ge=1)
    pgd_step_scale: float = Field(2.5, gt=0.0, description="PGD step = pgd_step_scale * eps / pgd_steps")
    pgd_random_start: bool = True
    bpda_surrogate: Surrogate = "identity"
    transfer: bool = Field(True, description="train the ReLU twin alongside and report transfer attacks from it")
    noise_sigmas: list[float] = Field([0.1, 0.2, 0.3], description="Gaussian noise std on the [0, 1] scale")
    attack_subset: int | None = Field(200, ge=10, description="attack the first N test images (None: all)")
    attack_every: int = Field(0, ge=0, description="attack every N epochs; 0: at the last epoch only")

    @model_validator(mode="before")
    @classmethod
    def _expand_variant(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("variant") is None:
            return data
        fields = parse_variant(str(data["variant"]))
        for key, value in fields.items():
            if key in data and data[key] != value:
                raise ValueError(f"variant {data['variant']!r} sets {key}={value}, but {key}={data[key]!r} is given too")
        return {**data, **fields}

    @model_validator(mode="after")
    def _consistent(self) -> TopKConfig:
        if self.dataset == "cifar10" and not self.data_root:
            raise ValueError("dataset cifar10 needs data_root (the folder holding its batches)")
        for name, values in (("epsilons", self.epsilons), ("noise_sigmas", self.noise_sigmas)):
            if any(not 0.0 <= v <= 1.0 for v in values):
                raise ValueError(f"{name} are on the [0, 1] pixel scale, got {values}")
            if len({milli(v) for v in values}) != len(values):
                raise ValueError(f"{name} {values} collide once x 1000 and rounded (the metric keys)")
        return self

    @property
    def network_name(self) -> NetworkName:
        if self.network is not None:
            return self.network
        return "small_cnn" if self.dataset == "digits" else "preact_resnet18"

    @property
    def width_value(self) -> int:
        if self.width is not None:
            return self.width
        return 32 if self.network_name == "small_cnn" else 64

    @property
    def augment_on(self) -> bool:
        return self.dataset == "cifar10" if self.augment is None else self.augment

    def attacks_at(self, epoch: int) -> bool:
        return epoch >= self.epochs or (self.attack_every > 0 and epoch % self.attack_every == 0)
