"""RCANConfig: the hyper-parameters of one RCAN, with the official defaults (Zhang et al. 2018, §4.1)."""
from __future__ import annotations

import dataclasses
import json

SCALES = (2, 3, 4, 8)
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def known_fields(cls, data) -> dict:
    """data, checked to name only fields of the dataclass cls (a typo must not fall back to a default)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return data


@dataclasses.dataclass(frozen=True)
class RCANConfig:
    scale: int = 2
    n_resgroups: int = 10   # G in the paper
    n_resblocks: int = 20   # B: RCABs per residual group
    n_feats: int = 64       # C: feature channels
    reduction: int = 16     # r: channel-attention squeeze ratio
    n_colors: int = 3
    rgb_range: float = 255
    rgb_mean: tuple[float, float, float] = DIV2K_MEAN

    def __post_init__(self):
        # rgb_mean may arrive as a list (from JSON); keep the dataclass hashable.
        object.__setattr__(self, "rgb_mean", tuple(float(m) for m in self.rgb_mean))
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        for name in ("n_resgroups", "n_resblocks", "n_feats", "reduction", "n_colors"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_feats % self.reduction:
            raise ValueError(f"n_feats ({self.n_feats}) must be divisible by reduction ({self.reduction})")
        if not self.rgb_range > 0:
            raise ValueError(f"rgb_range must be positive, got {self.rgb_range!r}")
        if len(self.rgb_mean) != self.n_colors:
            raise ValueError(f"rgb_mean has {len(self.rgb_mean)} values for {self.n_colors} colours")

    @property
    def squeeze(self) -> int:
        """Channels inside channel attention (C/r)."""
        return self.n_feats // self.reduction

    @property
    def upsample_steps(self) -> list[int]:
        """The pixel-shuffle factors of the upsampler: x2 -> [2], x4 -> [2, 2], x8 -> [2, 2, 2], x3 -> [3]."""
        return [3] if self.scale == 3 else [2] * {2: 1, 4: 2, 8: 3}[self.scale]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RCANConfig":
        return cls(**known_fields(cls, json.loads(text)))

    @classmethod
    def official(cls, scale: int = 2) -> "RCANConfig":
        """The released G10R20F64 model (RCAN_BIX{scale}.pt)."""
        return cls(scale=scale)

    @classmethod
    def compact(cls, scale: int = 2) -> "RCANConfig":
        """The compact model this project trains on CPU and ships (accel/weights/)."""
        return cls(scale=scale, n_resgroups=COMPACT["n_resgroups"], n_resblocks=COMPACT["n_resblocks"],
                   n_feats=COMPACT["n_feats"], reduction=COMPACT["reduction"])


    @classmethod
    def deep(cls, scale: int = 2) -> "RCANConfig":
        """The deep model this project trains (G5R10F64: the official width and attention, a quarter of
        its depth; 4.1 M parameters, a float32 checkpoint under 16 MiB)."""
        return cls(scale=scale, n_resgroups=DEEP["n_resgroups"], n_resblocks=DEEP["n_resblocks"])


# Chosen by measured quality per hour of CPU training (see accel/weights/rcan_compact_x2.md).
COMPACT = dict(n_resgroups=3, n_resblocks=5, n_feats=32, reduction=8)
DEEP = dict(n_resgroups=5, n_resblocks=10)

PRESETS = {"official": RCANConfig.official, "deep": RCANConfig.deep, "compact": RCANConfig.compact}
