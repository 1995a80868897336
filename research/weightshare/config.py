"""The project's typed config: every trial's hyperparameters, validated once at the edge.

Unknown keys are refused and the valid ones listed (`extra="forbid"`). `variant` is a shorthand for a
sweep's grid: "NETWORK/SHARING/FACTOR" (e.g. "resnet_small/repeat/4"; sharing "repeat-forgotten" is
repeat sharing with the full-width shortcut), so that one grid key spans networks and sharing kinds and
`orch compare --group-by` groups the seeds of each.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from weightshare.networks import NETWORKS, SHARING_OF, NetworkName
from weightshare.sharing import SharingKind

__all__ = ["WeightShareConfig", "parse_variant"]

_FORGOTTEN = "repeat-forgotten"


def parse_variant(variant: str) -> dict[str, Any]:
    """ "resnet_small/repeat/4" -> {network, sharing, factor, repeat_shortcut}."""
    parts = variant.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        raise ValueError(f"variant {variant!r} is not NETWORK/SHARING/FACTOR, e.g. resnet_small/repeat/4")
    network, sharing, factor = parts
    fields: dict[str, Any] = {"network": network, "sharing": sharing, "factor": int(factor)}
    if sharing == _FORGOTTEN:
        fields.update(sharing="repeat", repeat_shortcut=False)
    return fields


class WeightShareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    dataset: Literal["digits", "mnist", "cifar10"] = "digits"
    data_root: str | None = Field(None, description="folder of the MNIST IDX files or the CIFAR-10 batches")
    train_subset: int | None = Field(None, ge=10, description="the first N training images (the digits split is shuffled)")
    test_subset: int | None = Field(None, ge=10)
    augment: bool | None = Field(None, description="random crop (pad 4) + flip; default: on for cifar10 only")
    # network and its sharing
    variant: str | None = None
    network: NetworkName = "resnet_small"
    blocks: int = Field(1, ge=1, le=8, description="blocks per stage of resnet_small / light blocks of separable_small")
    sharing: SharingKind = "none"
    factor: Literal[1, 2, 4, 8] = 1
    repeat_shortcut: bool = True
    lightconv: bool = False
    dropconnect: float = Field(0.0, ge=0.0, lt=1.0)
    # training (the original: SGD momentum 0.9, wd 5e-4, MultiStepLR at 150/350 and 250/350 of training)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    lr: float = Field(0.05, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

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
    def _consistent(self) -> WeightShareConfig:
        if self.network not in NETWORKS:  # pragma: no cover (Literal already checks)
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
        if self.sharing not in SHARING_OF[self.network]:
            raise ValueError(f"network {self.network} takes sharing {', '.join(SHARING_OF[self.network])}, not {self.sharing}")
        if self.dataset != "digits" and not self.data_root:
            raise ValueError(f"dataset {self.dataset} needs data_root (the folder holding its files)")
        return self

    @property
    def augment_on(self) -> bool:
        return self.dataset == "cifar10" if self.augment is None else self.augment
