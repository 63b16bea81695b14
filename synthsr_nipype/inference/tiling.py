"""Bounded-memory inference for volumes too large even for recomputed skips: overlapping tiles.

Tiles start on multiples of ``2**(n_levels-1)`` voxels, so every pooling window of a tile is a pooling window
of the whole volume.  A tile's core is surrounded by ``margin`` voxels of context.  With the default margin,
the network's receptive radius (128 voxels for the published network, ``memory.receptive_radius``), every core
voxel sees exactly what it sees in the whole volume and tiling is exact up to float32 summation order.

Smaller margins are possible through the API, with linear cross-fading (``blend``) over the overlap.  They are
not the default: with the fixtures' random weights the network's dependence on far context does not fade, and a
48-voxel margin changed most uint8 voxels (``docs/performance.md``).
"""

from __future__ import annotations

import itertools
import math

import torch

from ..model.unet import UNet


def axis_tiles(size: int, core: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(tile_start, tile_end, core_start, core_end) along one axis; cores partition [0, size)."""
    if core >= size:
        return [(0, size, 0, size)]
    out = []
    for c0 in range(0, size, core):
        c1 = min(c0 + core, size)
        out.append((max(c0 - margin, 0), min(c1 + margin, size), c0, c1))
    return out


def axis_weights(size: int, tiles: list[tuple[int, int, int, int]], blend: int,
                 device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per tile, its 1-D weights over [tile_start, tile_end); and their sum over the axis.

    ``blend`` = 0: each voxel comes from the tile whose core holds it.  ``blend`` > 0: neighbours cross-fade
    linearly over [boundary - blend, boundary + blend) (needs ``blend`` <= margin).
    """
    weights = []
    total = torch.zeros(size, dtype=torch.float32, device=device)
    for t0, t1, c0, c1 in tiles:
        i = torch.arange(t0, t1, dtype=torch.float32, device=device) + 0.5
        if blend <= 0:
            w = ((i >= c0) & (i < c1)).to(torch.float32)
        else:
            w = torch.ones(t1 - t0, dtype=torch.float32, device=device)
            ramp = float(2 * blend)
            if c0 > 0:
                w = torch.minimum(w, ((i - (c0 - blend)) / ramp).clamp(0, 1))
            if c1 < size:
                w = torch.minimum(w, (((c1 + blend) - i) / ramp).clamp(0, 1))
        weights.append(w)
        total[t0:t1] += w
    return weights, total


def tile_grid(shape: tuple[int, int, int], core: tuple[int, int, int], margin: int, unit: int) -> list[list]:
    for s in (*shape, *core, margin):
        if s % unit:
            raise ValueError(f"tile sizes, margin and the padded shape must be multiples of {unit}: {shape}, "
                             f"{core}, {margin}")
    return [axis_tiles(s, c, margin) for s, c in zip(shape, core)]


def n_tiles(shape: tuple[int, int, int], core: tuple[int, int, int], margin: int) -> int:
    return math.prod(len(axis_tiles(s, c, margin)) for s, c in zip(shape, core))


@torch.inference_mode()
def tiled_forward(net: UNet, x: torch.Tensor, core: tuple[int, int, int], margin: int, *,
                  slab_rows: int | None = None, recompute: int = 0, blend: int = 0) -> torch.Tensor:
    """``net(x)`` for a padded (N, C, X, Y, Z) input, evaluated tile by tile (float32).

    With ``margin`` at least :func:`memory.receptive_radius` the result equals whole-volume inference up to
    float32 summation order; ``blend`` cross-fades neighbours (useful only with smaller margins).
    """
    unit = 2 ** (net.spec.n_levels - 1)
    shape = tuple(int(s) for s in x.shape[2:])
    core = tuple(min(int(c), s) for c, s in zip(core, shape))
    grid = tile_grid(shape, core, margin, unit)
    blend = min(int(blend), int(margin))
    per_axis = [axis_weights(s, tiles, blend, x.device) for s, tiles in zip(shape, grid)]
    out = torch.zeros((x.shape[0], net.spec.out_channels, *shape), dtype=torch.float32, device=x.device)
    for index in itertools.product(*(range(len(t)) for t in grid)):
        spans = [grid[a][i] for a, i in enumerate(index)]
        window = tuple(slice(t0, t1) for t0, t1, _, _ in spans)
        y = net(x[(slice(None), slice(None), *window)], slab_rows=slab_rows, recompute=recompute).float()
        wx, wy, wz = (per_axis[a][0][i] for a, i in enumerate(index))
        y.mul_(wx.view(-1, 1, 1)).mul_(wy.view(1, -1, 1)).mul_(wz.view(1, 1, -1))
        out[(slice(None), slice(None), *window)] += y
        del y
    for axis, (_, total) in enumerate(per_axis):
        view = [1, 1, 1]
        view[axis] = -1
        out.div_(total.view(view))
    return out
