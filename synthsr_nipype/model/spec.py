"""The shape of a SynthSR U-Net, independent of the file format its weights come in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class UNetSpec:
    """Everything needed to build the torch U-Net, read from the weights themselves."""

    prefix: str
    n_levels: int
    convs_per_level: int
    kernel_size: int
    in_channels: int
    out_channels: int
    down_widths: tuple[tuple[int, ...], ...]  # per level, per conv
    up_widths: tuple[tuple[int, ...], ...]  # per up level (deepest first), per conv
    batch_norm: bool
    extra_layers: tuple[str, ...] = field(default=())
    #: per up level (deepest first): whether it concatenates the encoder's skip (neurite's
    #: ``skip_n_concatenations`` drops the finest ones, as SynthSeg's denoiser does); empty: all do
    skip_levels: tuple[bool, ...] = field(default=())

    def concatenates(self, up_level: int) -> bool:
        return not self.skip_levels or self.skip_levels[up_level]

    @property
    def base_features(self) -> int:
        return self.down_widths[0][0]

    def as_dict(self) -> dict[str, object]:
        return {
            "n_levels": self.n_levels,
            "base_features": self.base_features,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "convs_per_level": self.convs_per_level,
            "kernel_size": self.kernel_size,
            "batch_norm": self.batch_norm,
        }


def published_spec(base_features: int = 24, in_channels: int = 1, n_levels: int = 5, convs_per_level: int = 2,
                   kernel_size: int = 3, out_channels: int = 1, batch_norm: bool = True) -> UNetSpec:
    """The released SynthSR architecture (defaults: 5 levels, 24 features doubling per level, 2 convolutions of
    size 3 per level, BatchNorm), or the same design at another size."""
    down = tuple((base_features * 2**level,) * convs_per_level for level in range(n_levels))
    up = tuple((base_features * 2 ** (n_levels - 2 - k),) * convs_per_level for k in range(n_levels - 1))
    return UNetSpec(prefix="unet", n_levels=n_levels, convs_per_level=convs_per_level, kernel_size=kernel_size,
                    in_channels=in_channels, out_channels=out_channels, down_widths=down, up_widths=up,
                    batch_norm=batch_norm)


#: The reference pads every axis of the network input to a multiple of 32 (n_levels=5 in its preprocess).
PAD_MULTIPLE = 32


def pad_multiple(spec: UNetSpec) -> int:
    """Voxels each padded axis is a multiple of: 32 as the reference, whatever the network depth, unless a
    deeper network needs more (each level halves the grid)."""
    return max(PAD_MULTIPLE, 2 ** (spec.n_levels - 1))
