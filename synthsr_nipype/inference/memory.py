"""Cost model of an inference: FLOPs, peak memory, and the plan (whole volume, slabs or tiles) that fits a bound.

Everything here is computed from the padded shape and the :class:`~synthsr_nipype.model.UNetSpec`, never from
a trial run, so a scheduler (the Nipype node's ``mem_gb``/``n_procs``) can use it before any data is read.
The byte counts follow the evaluation order of :class:`~synthsr_nipype.model.unet.UNet` (``docs/performance.md``
explains each term); they were calibrated against ``ru_maxrss`` on the whole-FLAIR fixture by
``benchmarks/run.py``, which reports estimate and measurement side by side.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
from dataclasses import dataclass

from ..model.spec import UNetSpec

#: The network's arithmetic (``run(precision=...)``, ``--precision``): bf16 halves what the cost model
#: counts per activation on CUDA; tf32 is fp32 storage.
PRECISIONS = ("fp32", "tf32", "bf16")

GIB = 1024.0**3
FLOAT_BYTES = 4
# Resident set of a Python process that has imported torch, nibabel and this package (measured, Linux x86-64).
PROCESS_BASELINE_GB = 0.42
DEFAULT_SLAB_ROWS = 32
MIN_TILE = 32          # smallest tile core along an axis (voxels)
SLAB_CHOICES = (32, 24, 16, 8)


# ----------------------------------------------------------------------------- FLOPs
def _level_convs(spec: UNetSpec) -> list[tuple[int, int, int, int]]:
    """(level, in_channels, out_channels, upsampled_in_channels) for every 3-D convolution of the network."""
    convs = []
    channels = spec.in_channels
    skips = []
    for level, widths in enumerate(spec.down_widths):
        for width in widths:
            convs.append((level, channels, width, 0))
            channels = width
        skips.append(channels)
    for k, widths in enumerate(spec.up_widths):
        level = spec.n_levels - 2 - k
        skip = skips[level]
        first = True
        for width in widths:
            if first:
                convs.append((level, skip, width, channels))  # input is [skip, upsampled]
                first = False
            else:
                convs.append((level, channels, width, 0))
            channels = width
    return convs


def flops_per_voxel(spec: UNetSpec, *, executed: bool = False) -> float:
    """Multiply-adds x 2 per padded voxel and pass.

    ``executed=False`` counts the published network (0.31 MFLOP/voxel for the 24-feature model): the floor
    the benchmark divides by.  ``executed=True`` counts what this implementation runs: the half of each
    decoder convolution that reads the nearest-upsampled tensor costs 8/27 of it (2x2x2 kernels per parity
    on the low-resolution grid).
    """
    taps = spec.kernel_size**3
    total = 0.0
    for level, cin, cout, cup in _level_convs(spec):
        scale = 8.0**-level
        total += 2.0 * taps * cin * cout * scale
        if cup:
            up_taps = 8 if (executed and spec.kernel_size == 3) else taps
            total += 2.0 * up_taps * cup * cout * scale
    last = spec.up_widths[-1][-1] if spec.up_widths else spec.down_widths[-1][-1]
    total += 2.0 * last * spec.out_channels
    return total


def network_flops(padded_shape: tuple[int, int, int], spec: UNetSpec, *, passes: int = 1,
                  executed: bool = False) -> float:
    return flops_per_voxel(spec, executed=executed) * math.prod(padded_shape) * passes


# ----------------------------------------------------------------------------- memory
ALLOCATOR_SLACK = 1.1  # measured peak RSS of the network / live bytes (glibc fragmentation, oneDNN scratch)
# The same plan's peak RSS varies from run to run (which thread's arena a buffer lands in, huge-page
# rounding): slabs of 24 with the level-0 skip recomputed, whole FLAIR, 2 threads, estimate 1.24 GB, peaked
# at 1.16, 1.22 and 1.30 GB in three runs. A bounded plan keeps its estimate this factor under the bound.
BOUND_HEADROOM = 1.06


def network_bytes(shape: tuple[int, int, int], spec: UNetSpec, *, slab_rows: int | None, batch: int = 1,
                  element_bytes: int = FLOAT_BYTES, recompute: int = 0) -> float:
    """Peak bytes of one forward pass on a (padded) ``shape``, activations only (see ``UNet.forward``)."""
    x, y, z = shape
    v = float(x * y * z)
    area = float(y * z)
    f = spec.down_widths[0][-1]
    f1 = spec.down_widths[1][-1] if spec.n_levels > 1 else f
    u1 = spec.up_widths[-2][-1] if spec.n_levels > 2 else f1   # level-1 decoder output
    u2 = spec.up_widths[-3][-1] if spec.n_levels > 3 else u1
    out = v * spec.out_channels
    if not slab_rows:
        return (v * f + 3.2 * v * f + v / 8 * f1 + out) * element_bytes * batch
    s = float(min(slab_rows, x))
    skip0 = v * f if recompute < 1 else 0.0
    skip1 = v / 8 * (f1 if recompute < 2 else f)  # or the level-1 input (pooled level 0) kept for recomputing
    pooled0 = v / 8 * f
    factor = 2.5 if recompute else 2.3
    encoder0 = skip0 + pooled0 + 2.2 * (s + 4) * area * f
    decoder1 = skip0 + skip1 + v / 64 * u2 + v / 8 * u1 + factor * (s / 2 + 6) * area / 4 * f1
    decoder0 = skip0 + v / 8 * u1 + out + factor * (s + 6) * area * f
    return max(encoder0, decoder1, decoder0) * element_bytes * batch


def process_bytes(padded_shape: tuple[int, int, int], spec: UNetSpec, *, slab_rows: int | None,
                  tiled: tuple[int, int, int] | None = None, tta: bool = True, recompute: int = 0) -> float:
    """Peak resident bytes of a CPU run: baseline + weights + volumes around the network + the network."""
    v = float(math.prod(padded_shape))
    params = float(sum(2 * 27 * c[1] * c[2] + 27 * c[3] * c[2] for c in _level_convs(spec)))
    weights = params * FLOAT_BYTES * 2  # module + the fast-path copies (channels-last, parity kernels)
    # around the network: input, flipped input, both pass outputs (+ a tile's input copy and weights when
    # tiled); pre-processing peaks earlier at ~3 float64 copies of the (unpadded, ~0.85 v) resampled volume
    around = v * FLOAT_BYTES * ((4 if tta else 2) * spec.in_channels + (1 if tiled else 0))
    prepost = 0.85 * v * 8 * 4
    net = ALLOCATOR_SLACK * network_bytes(tiled if tiled else padded_shape, spec, slab_rows=slab_rows,
                                          recompute=recompute)
    return PROCESS_BASELINE_GB * GIB + weights + max(prepost, around + net)


def receptive_radius(spec: UNetSpec) -> int:
    """Voxels of context beyond which an output voxel cannot see (conservative), rounded up to the pooling unit.

    Convolutions add ``convs * (k // 2) * 2**level`` per level on the way down and up; each pooling and each
    upsampling shifts by up to ``2**level``.  122 voxels for the published 5-level network, so 128.
    """
    half = spec.kernel_size // 2
    n = spec.n_levels
    down = sum(spec.convs_per_level * half * 2**level for level in range(n))
    up = sum(spec.convs_per_level * half * 2**level for level in range(n - 1))
    shifts = 2 * sum(2**level for level in range(n - 1))
    unit = 2 ** (n - 1)
    return int(math.ceil((down + up + shifts) / unit) * unit)


def estimate_memory_gb(padded_shape: tuple[int, int, int], spec: UNetSpec, device: str = "cpu", *,
                       slab_rows: int | None | str = "auto", tta: bool = True, bf16: bool = False) -> float:
    """Peak memory in GiB of one image's inference with the default plan.

    On the CPU: the process's peak resident set (what Nipype's ``mem_gb`` means).  On CUDA: the peak of
    allocated device memory (both TTA passes as one batch); the process's host memory is then about
    ``PROCESS_BASELINE_GB`` plus a few volumes.
    """
    dev = str(device)
    if dev.startswith("cuda"):
        element = 2 if bf16 else FLOAT_BYTES
        batch = 2 if tta else 1
        v = float(math.prod(padded_shape))
        return (network_bytes(padded_shape, spec, slab_rows=None, batch=batch, element_bytes=element)
                + v * FLOAT_BYTES * 4 + 0.1 * GIB) / GIB
    rows = default_slab_rows(spec, dev, padded_shape) if slab_rows == "auto" else slab_rows
    return process_bytes(padded_shape, spec, slab_rows=rows, tta=tta) / GIB


def estimate_threads(padded_shape: tuple[int, int, int], spec: UNetSpec | None = None,
                     available: int | None = None) -> int:
    """Threads worth giving one image (also the Nipype node's ``n_procs``).

    Intra-op parallelism only pays when each operation has enough work: below ~4 GFLOP per pass (a 64^3 crop
    with a narrow model) a second thread mostly waits at barriers, and on a shared machine a preempted thread
    stalls the other (measured: 0.1-0.2 s with 1 thread, 0.2-0.85 s with 2, for the tiny model on 64^3).
    """
    available = available or os.cpu_count() or 1
    v = math.prod(padded_shape)
    work = v * (flops_per_voxel(spec) if spec is not None else 309468.0)
    wanted = 1 if work < 4e9 else 2 if work < 2e11 else 4 if work < 1.5e12 else 8
    return max(1, min(available, wanted))


WHOLE_VOLUME_MAX_GB = 0.5  # below this many GB of activations, a whole-volume pass beats slabs on the CPU


def default_slab_rows(spec: UNetSpec, device: str = "cpu",
                      padded_shape: tuple[int, int, int] | None = None) -> int | None:
    """Slabs on the CPU for real-size models on real-size volumes; GPUs, narrow models and small volumes
    (whole-volume activations under ``WHOLE_VOLUME_MAX_GB``: fewer, larger convolutions) take whole levels."""
    if not str(device).startswith("cpu") or spec.base_features < 8:
        return None
    if padded_shape is not None and network_bytes(padded_shape, spec, slab_rows=None) < WHOLE_VOLUME_MAX_GB * GIB:
        return None
    return DEFAULT_SLAB_ROWS


# ----------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class InferencePlan:
    """How one image is evaluated: ``tile`` None means the whole padded volume at once."""

    slab_rows: int | None
    tile: tuple[int, int, int] | None = None   # tile core (multiples of 16) when tiled
    margin: int = 0
    estimate_gb: float = 0.0
    recompute: int = 0                           # encoder levels whose skips are recomputed, not kept

    @property
    def tiled(self) -> bool:
        return self.tile is not None


def plan_inference(padded_shape: tuple[int, int, int], spec: UNetSpec, device: str = "cpu", *,
                   max_memory_gb: float | None = None, slab_rows: int | None | str = "auto",
                   tta: bool = True, margin: int | None = None) -> InferencePlan:
    """The fastest plan whose estimated peak stays under ``max_memory_gb``.

    Order of preference, all exact (same result up to float32 summation order):

    1. the default (slabs of 32 rows on the CPU), then thinner slabs;
    2. skips recomputed instead of kept: level 0 (+14 % FLOPs), then levels 0 and 1 (+25 %);
    3. tiles with ``margin`` voxels of context (default: the receptive radius, so tiles are exact too), the
       tiling that computes the fewest voxels in total, each tile with recomputed skips.

    A plan fits when its estimate times ``BOUND_HEADROOM`` is under the bound. When nothing fits, the plan
    with the smallest estimate is returned (its ``estimate_gb`` tells by how much it misses).
    """
    dev = str(device)
    rows = default_slab_rows(spec, dev, padded_shape) if slab_rows == "auto" else slab_rows
    if max_memory_gb is None or dev.startswith("cuda"):
        est = estimate_memory_gb(padded_shape, spec, dev, slab_rows=rows, tta=tta)
        return InferencePlan(slab_rows=rows, estimate_gb=est)
    bound = float(max_memory_gb) * GIB / BOUND_HEADROOM
    candidates = [(r, 0) for r in [rows] + [r for r in SLAB_CHOICES if rows is None or r < rows]]
    candidates += [(r, rc) for rc in (1, 2) for r in SLAB_CHOICES]
    smallest = None
    for r, rc in candidates:
        est = process_bytes(padded_shape, spec, slab_rows=r, tta=tta, recompute=rc)
        if est <= bound:
            return InferencePlan(slab_rows=r, estimate_gb=est / GIB, recompute=rc)
        if smallest is None or est < smallest[0]:
            smallest = (est, InferencePlan(slab_rows=r, estimate_gb=est / GIB, recompute=rc))
    unit = 2 ** (spec.n_levels - 1)
    margin = receptive_radius(spec) if margin is None else int(math.ceil(margin / unit) * unit)
    best = None
    for core, tile, work in _tilings(padded_shape, margin, unit):
        for r in SLAB_CHOICES[-2:]:
            est = process_bytes(padded_shape, spec, slab_rows=r, tiled=tile, tta=tta, recompute=2)
            plan = InferencePlan(slab_rows=r, tile=core, margin=margin, estimate_gb=est / GIB, recompute=2)
            if est <= bound and (best is None or (work, -r) < best[0]):
                best = ((work, -r), plan)
            if smallest is None or est < smallest[0]:
                smallest = (est, plan)
    return best[1] if best is not None else smallest[1]


def _tilings(shape: tuple[int, int, int], margin: int, unit: int):
    """Every tiling with pooling-aligned cores: (core, largest tile, voxels computed / voxels in the volume)."""
    per_axis = []
    for size in shape:
        options = []
        for core in range(MIN_TILE, size + unit, unit):
            core = min(core, size)
            starts = range(0, size, core)
            lengths = [min(c0 + core + margin, size) - max(c0 - margin, 0) for c0 in starts]
            options.append((core, max(lengths), sum(lengths) / size))
            if core == size:
                break
        per_axis.append(options)
    for ox in per_axis[0]:
        for oy in per_axis[1]:
            for oz in per_axis[2]:
                yield (ox[0], oy[0], oz[0]), (ox[1], oy[1], oz[1]), ox[2] * oy[2] * oz[2]


def gpu_tile_plan(padded_shape: tuple[int, int, int], spec: UNetSpec, *, free_bytes: float,
                  element_bytes: int = FLOAT_BYTES, margin: int | None = None, headroom: float = 0.7,
                  split: bool = False) -> InferencePlan:
    """Tiles whose whole-volume forward (batch 1, no slabs) fits ``headroom`` of the free device memory.

    ``split`` asks for tiles smaller than the volume even when the estimate says the whole fits: after an
    out-of-memory error the estimate was too optimistic, and the same size would fail again.
    """
    unit = 2 ** (spec.n_levels - 1)
    margin = receptive_radius(spec) if margin is None else int(math.ceil(margin / unit) * unit)
    fixed = 4.0 * math.prod(padded_shape) * FLOAT_BYTES  # input, flipped input, output accumulator, a tile copy
    core = list(padded_shape)
    while True:
        tile = tuple(min(c + 2 * margin, s) for c, s in zip(core, padded_shape))
        need = fixed + network_bytes(tile, spec, slab_rows=None, element_bytes=element_bytes)
        shrinkable = [i for i in range(3) if core[i] > MIN_TILE]
        fits = need <= headroom * free_bytes and not (split and tuple(core) == tuple(padded_shape))
        if fits or not shrinkable:
            return InferencePlan(slab_rows=None, tile=tuple(core), margin=margin, estimate_gb=need / GIB)
        axis = max(shrinkable, key=lambda i: (tile[i], i))
        core[axis] = max(MIN_TILE, core[axis] - unit)


# ----------------------------------------------------------------------------- allocator
_TUNED = False


def tune_allocator() -> bool:
    """Opt-in (``SYNTHSR_MALLOC_TUNING=1``): keep freed memory in glibc's heap instead of returning it (Linux).

    Every large tensor is otherwise a fresh ``mmap`` whose pages fault in one by one; on the test VM a 4 KiB
    fault costs ~10 us, 45 % of a slabbed forward pass without transparent huge pages.  ``M_MMAP_MAX = 0`` and
    a high ``M_TRIM_THRESHOLD`` make slabs reuse warm pages.  It is off by default: with
    ``THP_MEM_ALLOC_ENABLE=1`` (which the ``synthsr`` command sets) it gained little more (128 s against
    132 s for the whole FLAIR, 2 threads) and its fragmentation raised the peak RSS from 1.90 to 2.38 GB.
    """
    global _TUNED
    if _TUNED or os.environ.get("SYNTHSR_MALLOC_TUNING", "0") != "1" or not sys.platform.startswith("linux"):
        return False
    _TUNED = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
        ok = libc.mallopt(m_mmap_max, 0) == 1
        ok &= libc.mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1)) == 1
        # one arena: OpenMP workers' allocations would otherwise pin memory in heaps of their own
        ok &= libc.mallopt(m_arena_max, 1) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False
