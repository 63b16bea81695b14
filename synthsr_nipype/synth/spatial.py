"""Random geometry: affine x smooth diffeomorphism, random crop, left-right flip.

The transform is expressed as world coordinates (mm, RAS) for every voxel of the 1 mm output crop, so that one
draw resamples label maps (nearest) and aligned real images (linear) of any voxel size alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import SpatialConfig
from .labels import LabelMap
from .random import normal, uniform


def rotation_matrix(angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotation about x, then y, then z (float64, 3x3)."""
    ax, ay, az = (math.radians(float(a)) for a in angles_deg)
    rx = torch.tensor([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]],
                      dtype=torch.float64)
    ry = torch.tensor([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]],
                      dtype=torch.float64)
    rz = torch.tensor([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]],
                      dtype=torch.float64)
    return rz @ ry @ rx


def brain_box(label_map: LabelMap) -> tuple[np.ndarray, np.ndarray]:
    """Voxel bounding box (first, last) of the non-zero labels."""
    nonzero = torch.nonzero(label_map.labels > 0)
    if len(nonzero) == 0:
        raise ValueError(f"{label_map.path}: label map is empty (all zero)")
    return nonzero.min(0).values.numpy(), nonzero.max(0).values.numpy()


class RandomSpatialTransform:
    """Draws and applies the spatial augmentation of one sample."""

    def __init__(self, config: SpatialConfig, crop: tuple[int, int, int], padding: int = 0) -> None:
        self.config = config
        self.crop = tuple(int(c) for c in crop)
        self.padding = int(padding)

    def sample(self, label_map: LabelMap, box: tuple[np.ndarray, np.ndarray], rng: torch.Generator) -> dict[str, Any]:
        cfg = self.config
        scales = uniform(rng, 1 - cfg.scaling, 1 + cfg.scaling, 3)
        angles = uniform(rng, -cfg.rotation_deg, cfg.rotation_deg, 3)
        shears = uniform(rng, -cfg.shearing, cfg.shearing, 6)
        shear = torch.eye(3, dtype=torch.float64)
        shear[0, 1], shear[0, 2], shear[1, 0], shear[1, 2], shear[2, 0], shear[2, 1] = shears
        matrix = rotation_matrix(angles) @ shear @ torch.diag(scales)
        # crop centre: anywhere that keeps the crop inside the labelled box grown by ``padding`` along each axis
        lo, hi = box
        centre = np.empty(3)
        for axis in range(3):
            half = self.crop[axis] / 2.0
            first, last = lo[axis] - self.padding + half, hi[axis] + self.padding - half
            centre[axis] = (float(uniform(rng, first, last, 1)[0]) if last > first else (lo[axis] + hi[axis]) / 2.0)
        centre_mm = label_map.affine[:3, :3] @ centre + label_map.affine[:3, 3]
        centre_mm = centre_mm + uniform(rng, -cfg.translation_mm, cfg.translation_mm, 3).numpy()
        coarse = tuple(max(2, math.ceil(c / cfg.nonlin_spacing_mm) + 1) for c in self.crop)
        velocity_std = float(uniform(rng, 0.0, cfg.nonlin_std_mm, 1)[0])
        velocity = normal(rng, (3, *coarse)) * velocity_std
        flip = bool(cfg.flip and float(uniform(rng, 0.0, 1.0, 1)[0]) < 0.5)
        return {"scales": scales.tolist(), "rotation_deg": angles.tolist(), "shears": shears.tolist(),
                "matrix": matrix, "centre_mm": centre_mm.tolist(), "velocity_std_mm": velocity_std,
                "velocity": velocity, "flip": flip}

    def world_coordinates(self, params: dict[str, Any], device: torch.device) -> torch.Tensor:
        """(X, Y, Z, 3) float64 world coordinates (mm) of the output crop's voxels."""
        axes = [torch.arange(c, dtype=torch.float64, device=device) - (c - 1) / 2.0 for c in self.crop]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        grid = grid + integrate_velocity(params["velocity"].to(device), self.crop, self.config.integration_steps)
        matrix = params["matrix"].to(device)
        centre = torch.as_tensor(params["centre_mm"], dtype=torch.float64, device=device)
        return grid @ matrix.T + centre


def integrate_velocity(velocity: torch.Tensor, shape: tuple[int, int, int], steps: int) -> torch.Tensor:
    """Displacement (X, Y, Z, 3), mm, of the diffeomorphism exp(v) by scaling and squaring.

    ``velocity`` (3, gx, gy, gz) in mm on a coarse grid spanning the crop; integrated on a grid of half the
    crop's resolution (smooth fields lose nothing there) and upsampled.
    """
    half = tuple(max(2, (s + 1) // 2) for s in shape)
    field = F.interpolate(velocity[None].float(), size=half, mode="trilinear", align_corners=True)[0]
    field = field / (2 ** steps)
    spacing = torch.tensor([(s - 1) / (h - 1) for s, h in zip(shape, half)], device=field.device)
    for _ in range(steps):
        field = field + _warp(field, field / spacing.view(3, 1, 1, 1))
    disp = F.interpolate(field[None], size=tuple(shape), mode="trilinear", align_corners=True)[0]
    return disp.permute(1, 2, 3, 0).to(torch.float64)


def _warp(volume: torch.Tensor, shift_vox: torch.Tensor) -> torch.Tensor:
    """``volume`` (C, X, Y, Z) sampled at x + shift (voxels), linear, border values outside."""
    shape = volume.shape[1:]
    axes = [torch.arange(n, dtype=volume.dtype, device=volume.device) for n in shape]
    base = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)
    return sample_voxels(volume, (base + shift_vox).permute(1, 2, 3, 0), mode="bilinear")


def sample_voxels(volume: torch.Tensor, index: torch.Tensor, mode: str, padding: str = "border") -> torch.Tensor:
    """``volume`` (C, X, Y, Z) at voxel coordinates ``index`` (..., 3) -> (C, ...); grid_sample's conventions."""
    sizes = torch.tensor(volume.shape[1:], dtype=index.dtype, device=index.device)
    normalised = 2 * index / (sizes - 1).clamp(min=1) - 1
    grid = normalised.flip(-1).to(volume.dtype)[None]  # grid_sample wants (z, y, x) for a (D, H, W) volume
    return F.grid_sample(volume[None], grid, mode=mode, padding_mode=padding, align_corners=True)[0]


def sample_world(volume: torch.Tensor, affine: np.ndarray, world: torch.Tensor, mode: str) -> torch.Tensor:
    """A (X, Y, Z) volume with voxel->mm ``affine`` at world coordinates ``world`` (..., 3); zero outside."""
    inverse = torch.as_tensor(np.linalg.inv(affine), dtype=torch.float64, device=world.device)
    index = world @ inverse[:3, :3].T + inverse[:3, 3]
    return sample_voxels(volume[None].float(), index, mode=mode, padding="zeros")[0]


def rigid_perturbation(world: torch.Tensor, centre_mm: list[float], angles_deg: torch.Tensor,
                       shift_mm: torch.Tensor) -> torch.Tensor:
    """World coordinates moved by a small rigid transform about the crop centre (misregistration)."""
    centre = torch.as_tensor(centre_mm, dtype=torch.float64, device=world.device)
    rot = rotation_matrix(angles_deg).to(world.device)
    return (world - centre) @ rot.T + centre + shift_mm.to(world.device, torch.float64)
