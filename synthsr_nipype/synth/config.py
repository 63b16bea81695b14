"""Generator settings: frozen dataclasses in physical units, built from (and written back to) plain dicts.

Defaults follow the SynthSR paper and its public tutorials; the sections mirror a training config's
``generator:`` block, so that a model card can record exactly what a model was trained on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class SpatialConfig:
    """Random affine + smooth diffeomorphism + L-R flip (SynthSR tutorial defaults)."""

    scaling: float = 0.1  # scale factors drawn in [1 - s, 1 + s]
    rotation_deg: float = 8.0  # per axis, in [-r, r]
    shearing: float = 0.01  # off-diagonal terms in [-h, h]
    translation_mm: float = 0.0  # extra shift of the crop centre, in [-t, t] (the crop itself is random)
    nonlin_std_mm: float = 3.0  # std of the velocity field is drawn in [0, nonlin_std_mm]
    nonlin_spacing_mm: float = 16.0  # control-point spacing of the velocity field
    integration_steps: int = 7  # scaling and squaring
    flip: bool = True  # left-right flip (with label swap) with probability 0.5


@dataclass(frozen=True)
class ChannelConfig:
    """One synthetic input channel: its contrast, corruption and acquisition.

    ``spacing``/``thickness`` are mm per RAS axis (e.g. 5 mm axial = ``(1, 1, 5)``); ``spacing: None`` draws a
    random acquisition each sample: with probability ``p_isotropic`` isotropic up to ``max_spacing_iso``, else
    one random axis up to ``max_spacing`` and the others at 1 mm; thickness then lies between 1 mm and the
    spacing (slice gaps).  ``thickness: None`` with a given spacing means contiguous slices.
    """

    suffix: str = "T1w"  # BIDS suffix of the scans this channel stands for
    contrast: str = "uniform"  # prior tables prior_{means,stds}_<contrast>.npy, or "uniform"
    classes: str = "generation_classes"  # <classes>.npy in the tables folder: intensity class of each label
    spacing: Triple | None = None
    thickness: Triple | None = None
    max_spacing: float = 9.0
    max_spacing_iso: float = 4.0
    p_isotropic: float = 0.25
    slice_profile_width: tuple[float, float] = (0.8, 1.2)  # FWHM = thickness x U(lo, hi)
    noise_std: float = 0.03  # Gaussian noise std drawn in [0, noise_std] (fraction of the image range)
    bias_std: float = 0.5  # log-field std drawn in [0, bias_std]
    bias_spacing_mm: float = 40.0
    gamma_std: float = 0.4  # exponent = exp(N(0, gamma_std))
    uniform_means: tuple[float, float] = (0.0, 225.0)  # "uniform" contrast: class means in [lo, hi]
    uniform_stds: tuple[float, float] = (0.0, 25.0)
    registration_error_deg: float = 0.0  # simulated misregistration to channel 0 (channels 1..)
    registration_error_mm: float = 0.0


@dataclass(frozen=True)
class TargetConfig:
    """The regression target: a synthetic 1 mm T1 (``contrast`` prior) or real images aligned to the maps."""

    contrast: str = "t1_hr"
    classes: str = "generation_classes"
    images: tuple[str, ...] = ()  # one real image per label map (same order); empty: synthetic
    texture: bool = True  # per-class std of the prior (False: class means only)
    residual_channel: int | None = None  # learn target - that input channel (same contrast)
    # The reference's synthetic-target path (SynthSR labels_to_image_model: IntensityAugmentation(clip=300,
    # normalise=True, gamma_std=.5) then GaussianBlur(sigma=.5)); the defaults keep the plain prior image.
    clip: float | None = None  # intensities above this are clipped before the normalisation
    normalise: bool = False  # min-max to [0, 1] over the crop, then 1 = 255 on the T1 scale (TARGET_SCALE)
    gamma_std: float = 0.0  # after normalising: x ** exp(N(0, gamma_std))
    blur_sigma: float = 0.0  # last: Gaussian blur, sigma in voxels of the 1 mm grid


@dataclass(frozen=True)
class GeneratorConfig:
    tables: str = "../shared/data/labels/synthsr"  # generation_{labels,classes}.npy and prior tables
    crop: tuple[int, int, int] = (128, 128, 128)
    #: the crop's centre is drawn so that the crop stays inside the labelled box grown by this many voxels on
    #: every side: 0 keeps crops on the labels; the reference pads the label map and crops anywhere in it, so
    #: its crops reach past the head into the air, as a scan's field of view does
    crop_padding: int = 0
    channels: tuple[ChannelConfig, ...] = (ChannelConfig(),)
    target: TargetConfig = field(default_factory=TargetConfig)
    spatial: SpatialConfig = field(default_factory=SpatialConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "GeneratorConfig":
        data = dict(data or {})
        _reject_unknown(cls, data, "generator")
        kwargs: dict[str, Any] = {}
        if "tables" in data:
            kwargs["tables"] = str(data["tables"])
        if "crop" in data:
            crop = data["crop"]
            crop = [crop] * 3 if isinstance(crop, int) else list(crop)
            if len(crop) != 3 or any(int(c) < 8 for c in crop):
                raise ValueError(f"generator.crop must be one or three sizes >= 8, got {data['crop']!r}")
            kwargs["crop"] = tuple(int(c) for c in crop)
        if "crop_padding" in data:
            padding = data["crop_padding"]
            if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
                raise ValueError(f"generator.crop_padding must be a whole number of voxels >= 0, got {padding!r}")
            kwargs["crop_padding"] = padding
        if "channels" in data:
            if not data["channels"]:
                raise ValueError("generator.channels must list at least one channel")
            kwargs["channels"] = tuple(_build(ChannelConfig, c, f"generator.channels[{i}]")
                                       for i, c in enumerate(data["channels"]))
        if "target" in data:
            kwargs["target"] = _build(TargetConfig, data["target"], "generator.target")
        if "spatial" in data:
            kwargs["spatial"] = _build(SpatialConfig, data["spatial"], "generator.spatial")
        config = cls(**kwargs)
        config.validate()
        return config

    def as_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def validate(self) -> None:
        for i, channel in enumerate(self.channels):
            for name in ("spacing", "thickness"):
                value = getattr(channel, name)
                if value is not None and (len(value) != 3 or min(value) <= 0):
                    raise ValueError(f"generator.channels[{i}].{name} must be three positive sizes in mm")
            if channel.spacing is None and channel.thickness is not None:
                raise ValueError(f"generator.channels[{i}]: thickness needs a spacing")
        target = self.target
        if target.clip is not None and target.clip <= 0:
            raise ValueError("generator.target.clip must be positive")
        if target.gamma_std < 0 or target.blur_sigma < 0:
            raise ValueError("generator.target.gamma_std and blur_sigma must be >= 0")
        if target.gamma_std > 0 and not target.normalise:
            raise ValueError("generator.target.gamma_std needs normalise: true (the gamma acts on [0, 1])")
        residual = self.target.residual_channel
        if residual is not None and not 0 <= residual < len(self.channels):
            raise ValueError(f"generator.target.residual_channel {residual} is not a channel index")

    @property
    def suffixes(self) -> tuple[str, ...]:
        return tuple(c.suffix for c in self.channels)


def _reject_unknown(cls: type, data: dict[str, Any], where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _build(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    data = dict(data or {})
    _reject_unknown(cls, data, where)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        kwargs[f.name] = tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                               for v in value) if isinstance(value, (list, tuple)) else value
    if cls is TargetConfig and "images" in kwargs:
        kwargs["images"] = tuple(str(p) for p in kwargs["images"])
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
