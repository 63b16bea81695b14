"""Per-channel corruption and acquisition: bias field, normalisation + gamma, then the scanner's sampling.

The acquisition models a 2-D (or 3-D) protocol on the 1 mm grid: blur with the slice profile (a Gaussian whose
FWHM is the slice thickness, its width randomised), sample at the slice spacing with a random offset (gaps
where spacing > thickness), add noise, and interpolate back to 1 mm linearly, as the inference resamples.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..inference.geometry import interpolate_axis
from .config import ChannelConfig
from .random import normal, uniform

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def min_max(image: torch.Tensor) -> torch.Tensor:
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else torch.zeros_like(image)


class BiasField:
    """Smooth multiplicative field: exp of Gaussian noise on a coarse grid (``bias_spacing_mm``), upsampled."""

    def __init__(self, config: ChannelConfig) -> None:
        self.std = config.bias_std
        self.spacing = config.bias_spacing_mm

    def sample(self, shape: tuple[int, ...], rng: torch.Generator) -> dict[str, Any]:
        coarse = tuple(max(2, math.ceil(s / self.spacing) + 1) for s in shape)
        std = float(uniform(rng, 0.0, self.std, 1)[0])
        return {"bias_std": std, "bias_coarse": normal(rng, coarse) * std}

    @staticmethod
    def field(params: dict[str, Any], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        coarse = params["bias_coarse"].to(device)[None, None]
        return torch.exp(F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)[0, 0])

    def apply(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return image * self.field(params, tuple(image.shape), image.device)


class GammaNormalisation:
    """Min-max to [0, 1], then ``x ** exp(N(0, gamma_std))``."""

    def __init__(self, config: ChannelConfig) -> None:
        self.std = config.gamma_std

    def sample(self, rng: torch.Generator) -> dict[str, Any]:
        return {"gamma": float(torch.exp(normal(rng, (1,)) * self.std)[0])}

    @staticmethod
    def apply(image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return min_max(image).pow_(params["gamma"])


class Acquisition:
    """Slice spacing and thickness per axis (mm), slice-profile blur, down- and upsampling, noise."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    def sample(self, shape: tuple[int, ...], rng: torch.Generator) -> dict[str, Any]:
        cfg = self.config
        if cfg.spacing is not None:
            spacing = [float(s) for s in cfg.spacing]
            thickness = [float(t) for t in (cfg.thickness or cfg.spacing)]
        else:
            if float(uniform(rng, 0, 1, 1)[0]) < cfg.p_isotropic:
                spacing = [float(uniform(rng, 1.0, cfg.max_spacing_iso, 1)[0])] * 3
            else:
                spacing = [1.0, 1.0, 1.0]
                axis = int(torch.randint(0, 3, (1,), generator=rng)[0])
                spacing[axis] = float(uniform(rng, 1.0, cfg.max_spacing, 1)[0])
            thickness = [float(uniform(rng, 1.0, s, 1)[0]) if s > 1 else 1.0 for s in spacing]
        width = uniform(rng, *cfg.slice_profile_width, 3)
        sigmas = [float(t * w * FWHM_TO_SIGMA) for t, w in zip(thickness, width)]
        offsets = [float(uniform(rng, 0.0, s, 1)[0]) for s in spacing]
        noise_std = float(uniform(rng, 0.0, cfg.noise_std, 1)[0])
        return {"spacing_mm": spacing, "thickness_mm": thickness, "blur_sigma_mm": sigmas,
                "slice_offset_mm": offsets, "noise_std": noise_std}

    @staticmethod
    def apply(image: torch.Tensor, params: dict[str, Any], rng: torch.Generator) -> torch.Tensor:
        """``image`` (X, Y, Z) on the 1 mm grid -> the same grid after acquisition and reconstruction."""
        shape = tuple(image.shape)
        low = blur(image, params["blur_sigma_mm"])
        positions = []
        for axis, (spacing, offset) in enumerate(zip(params["spacing_mm"], params["slice_offset_mm"])):
            n = shape[axis]
            offset = min(offset, n - 1)
            count = int(math.floor((n - 1 - offset) / spacing)) + 1
            slices = offset + spacing * torch.arange(count, dtype=torch.float64)
            positions.append(slices)
            low = interpolate_axis(low, axis, slices)
        if params["noise_std"] > 0:
            scale = float(low.max() - low.min())
            low = low + normal(rng, tuple(low.shape)).to(image.device) * (params["noise_std"] * scale)
        for axis, slices in enumerate(positions):
            grid = torch.arange(shape[axis], dtype=torch.float64)
            index = (grid - slices[0]) / (params["spacing_mm"][axis])
            low = interpolate_axis(low, axis, index.clamp(0, len(slices) - 1))
        return min_max(low)


def blur(image: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """Separable Gaussian blur (sigma in voxels of the 1 mm grid), edges replicated."""
    out = image[None, None]
    for axis, sigma in enumerate(sigmas):
        if sigma < 0.1:
            continue
        radius = max(1, int(math.ceil(3 * sigma)))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=image.device)
        taps = torch.exp(-0.5 * (x / sigma) ** 2)
        taps = taps / taps.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(taps)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), taps.view(shape))
    return out[0, 0]
