"""Resampling, blurring and re-orientation exactly as ``mri_synthsr`` does them, vectorised in torch.

The reference uses ``scipy.ndimage.gaussian_filter`` (mode 'reflect', truncate 4, passes on axes 0, 1, 2, each
pass written back in the array's dtype) and ``RegularGridInterpolator`` (linear, float64).  Both are separable
on the grids involved, so here each is a few shifted, weighted sums along one axis at a time, on whatever
device the volume lives on.  The quirks kept are listed in ``docs/fidelity.md`` ("What makes it exact rather
than close").
"""

from __future__ import annotations

import math

import numpy as np
import torch

_TORCH_INT = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Column norms of the affine's 3x3 part (the reference ignores pixdim)."""
    return np.sqrt(np.sum(np.asarray(affine, dtype=np.float64) ** 2, axis=0))[:3]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's normalised Gaussian taps."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def _reflect_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a 'reflect' (half-sample symmetric, d c b a | a b c d) extension by ``radius``."""
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def gaussian_blur(volume: torch.Tensor, sigmas: "np.ndarray | list[float]") -> torch.Tensor:
    """Separable Gaussian blur matching ``scipy.ndimage.gaussian_filter(volume, sigmas)``.

    Each 1-D pass is accumulated in float64 and stored in the input dtype, truncating toward zero for
    integer inputs, as scipy does.
    """
    out = volume
    for axis, sigma in enumerate(sigmas):
        if sigma <= 1e-15:
            continue
        taps = gaussian_kernel1d(float(sigma))
        radius = (len(taps) - 1) // 2
        n = out.shape[axis]
        padded = out.index_select(axis, _reflect_index(n, radius, out.device)).to(torch.float64)
        # scipy's symmetric-kernel loop, in its order: centre tap, then (x[-j] + x[+j]) * w[j] for j = r..1.
        # The order matters for integer inputs, where a sum landing a hair below an integer truncates down.
        acc = padded.narrow(axis, radius, n) * float(taps[radius])
        pair = torch.empty_like(acc)  # one scratch buffer for all taps (same arithmetic, fewer fresh pages)
        for j in range(radius, 0, -1):
            torch.add(padded.narrow(axis, radius - j, n), padded.narrow(axis, radius + j, n), out=pair)
            acc += pair.mul_(float(taps[radius + j]))
        del padded, pair
        if volume.dtype in _TORCH_INT:
            acc = acc.trunc_()
        out = acc.to(volume.dtype)
    return out if out is not volume else volume.clone()


def grid_coordinates(n: int, factor: float) -> np.ndarray:
    """The reference's sample positions (input voxel units) along one axis, clamped to the volume."""
    start = -(factor - 1) / (2 * factor)
    step = 1.0 / factor
    stop = start + step * math.ceil(n * factor)
    # np.arange itself, because its length can exceed ceil(n * factor) by one through float rounding
    coords = np.arange(start, stop, step)
    return np.clip(coords, 0, n - 1)


def interpolate_axis(volume: torch.Tensor, axis: int, coords: np.ndarray) -> torch.Tensor:
    """Linear interpolation of a float64 volume at ``coords`` (within [0, n-1]) along one axis."""
    n = volume.shape[axis]
    if n == 1:
        return volume.index_select(axis, torch.zeros(len(coords), dtype=torch.long, device=volume.device))
    c = torch.as_tensor(coords, dtype=torch.float64, device=volume.device)
    lower = torch.clamp(torch.floor(c).long(), 0, n - 2)
    weight = c - lower.to(torch.float64)
    shape = [1, 1, 1]
    shape[axis] = -1
    weight = weight.view(shape)
    low = volume.index_select(axis, lower)
    high = volume.index_select(axis, lower + 1)
    # in place, same arithmetic as low * (1 - weight) + high * weight
    return low.mul_(1 - weight).add_(high.mul_(weight))


def resample_to_1mm(volume: torch.Tensor, affine: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Blur (axes at or below 1 mm), then linearly resample to 1 mm on the reference grid.

    Returns the float64 resampled volume and its affine ``aff2``.
    """
    factor = voxel_sizes(affine)
    sigmas = 0.25 / factor
    sigmas[factor > 1] = 0
    blurred = gaussian_blur(volume, sigmas)
    out = blurred.to(torch.float64)
    del blurred
    for axis in range(3):
        out = interpolate_axis(out, axis, grid_coordinates(volume.shape[axis], float(factor[axis])))
    aff2 = np.array(affine, dtype=np.float64, copy=True)
    for c in range(3):
        aff2[:-1, c] = aff2[:-1, c] / factor[c]
    aff2[:-1, -1] = aff2[:-1, -1] - aff2[:-1, :-1] @ (0.5 * (factor - 1))
    return out, aff2


def resample_like(flo: torch.Tensor, aff_flo: np.ndarray, ref_shape: tuple[int, int, int], aff_ref: np.ndarray,
                  chunk_rows: int = 16) -> torch.Tensor:
    """Trilinear reslice of ``flo`` onto a reference grid; 0 outside the floating volume (no clamping)."""
    transform = torch.as_tensor(np.linalg.inv(aff_flo) @ aff_ref, dtype=torch.float64, device=flo.device)
    values = flo.to(torch.float64)
    dims = torch.tensor(flo.shape, device=flo.device)
    out = torch.empty(ref_shape, dtype=torch.float64, device=flo.device)
    ys = torch.arange(ref_shape[1], dtype=torch.float64, device=flo.device)
    zs = torch.arange(ref_shape[2], dtype=torch.float64, device=flo.device)
    for a in range(0, ref_shape[0], chunk_rows):
        xs = torch.arange(a, min(a + chunk_rows, ref_shape[0]), dtype=torch.float64, device=flo.device)
        grid = torch.stack(torch.meshgrid(xs, ys, zs, indexing="ij"), dim=-1)
        coords = grid @ transform[:3, :3].T + transform[:3, 3]
        inside = ((coords >= 0) & (coords <= (dims - 1).to(torch.float64))).all(dim=-1)
        lower = torch.minimum(torch.clamp(torch.floor(coords).long(), min=0), dims - 2)
        frac = coords - lower.to(torch.float64)
        acc = torch.zeros(coords.shape[:-1], dtype=torch.float64, device=flo.device)
        for corner in range(8):
            offs = [(corner >> s) & 1 for s in (2, 1, 0)]
            idx = [lower[..., d] + offs[d] for d in range(3)]
            w = torch.ones_like(acc)
            for d in range(3):
                w = w * (frac[..., d] if offs[d] else 1 - frac[..., d])
            acc += values[idx[0].clamp(max=flo.shape[0] - 1), idx[1].clamp(max=flo.shape[1] - 1),
                          idx[2].clamp(max=flo.shape[2] - 1)] * w
        out[a : a + xs.numel()] = torch.where(inside, acc, torch.zeros_like(acc))
    return out


# ----------------------------------------------------------------------------- orientation
def ras_axes(affine: np.ndarray) -> np.ndarray:
    """For each world axis (R, A, S), the voxel axis that points along it most (reference ``get_ras_axes``)."""
    inverted = np.linalg.inv(affine)
    axes = np.argmax(np.absolute(inverted[0:3, 0:3]), axis=0)
    for i in range(3):
        if i not in axes:
            unique, counts = np.unique(axes, return_counts=True)
            duplicated = unique[np.argmax(counts)]
            axes[np.where(axes == duplicated)[0][-1]] = i
    return axes


def align_to_ref(volume: torch.Tensor, affine: np.ndarray, affine_ref: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Permute and flip the three spatial axes (leading dims) of ``volume`` to the reference's orientation.

    Same swap sequence and flips as the reference's ``align_volume_to_ref``; returns the volume and the
    aligned affine.
    """
    aff_flo = np.array(affine, dtype=np.float64, copy=True)
    axes_ref = ras_axes(affine_ref)
    axes_flo = ras_axes(aff_flo)
    aff_flo[:, axes_ref] = aff_flo[:, axes_flo]
    for i in range(3):
        if axes_flo[i] != axes_ref[i]:
            volume = volume.swapaxes(int(axes_flo[i]), int(axes_ref[i]))
            j = int(np.where(axes_flo == axes_ref[i])[0][0])
            axes_flo[j], axes_flo[i] = axes_flo[i], axes_flo[j]
    dots = np.sum(aff_flo[:3, :3] * np.asarray(affine_ref)[:3, :3], axis=0)
    for i in range(3):
        if dots[i] < 0:
            volume = torch.flip(volume, dims=(i,))
            aff_flo[:, i] = -aff_flo[:, i]
            aff_flo[:3, 3] = aff_flo[:3, 3] - aff_flo[:3, i] * (volume.shape[i] - 1)
    return volume, aff_flo


# ----------------------------------------------------------------------------- padding
def pad_shape(shape: tuple[int, ...], multiple: int) -> tuple[int, ...]:
    return tuple(int(math.ceil(s / multiple) * multiple) for s in shape)


def pad_to(volume: torch.Tensor, target: tuple[int, ...]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the three leading axes to ``target``: floor of half the margin below, the rest above."""
    lows = [max((t - s) // 2, 0) for t, s in zip(target, volume.shape[:3])]
    out = volume.new_zeros(tuple(max(t, s) for t, s in zip(target, volume.shape[:3])) + tuple(volume.shape[3:]))
    window = tuple(slice(lo, lo + s) for lo, s in zip(lows, volume.shape[:3]))
    out[window] = volume
    return out, window
