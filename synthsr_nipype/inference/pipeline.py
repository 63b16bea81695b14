"""The SynthSR pipeline as pure functions: prepare -> network (+ flip TTA) -> finish -> image.

``run`` composes them and is the one entry point used by the commands, the Nipype interface and the tests.
The steps follow FreeSurfer's ``mri_synthsr`` (general) and ``mri_synthsr_hyperfine`` numerically; every
quirk kept is listed in the documentation, ``docs/fidelity.md`` ("What makes it exact rather than close").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch

from ..errors import InputImageError, ModelError
from ..model import DEFAULT_MODEL, SynthSRModel, UNet, load_model
from ..model.device import pick_device
from ..model.spec import pad_multiple
from . import memory
from .geometry import (
    align_to_ref,
    gaussian_blur,
    pad_shape,
    pad_to,
    resample_like,
    resample_to_1mm,
)
from .io import InputVolume, load_volume
from .reliability import ScanReliability, input_thickness, output_reliability
from .tiling import tiled_forward

log = logging.getLogger(__name__)

ImageLike = "nib.spatialimages.SpatialImage | str | os.PathLike[str]"
CT_RANGE = (0.0, 80.0)
OUTPUT_CLIP = 128.0
SHARPEN_SIGMA = 1.5
IDENTITY = np.eye(4)
CPU = torch.device("cpu")


@dataclass
class Prepared:
    """What goes into the network plus what is needed to undo the geometry afterwards."""

    net_input: torch.Tensor  # (1, C, X, Y, Z) float32, RAS-aligned and padded
    window: tuple[slice, slice, slice]  # the unpadded region
    affine: np.ndarray  # resampled 1 mm affine in the input's voxel order (the output affine)
    header: nib.Nifti1Header
    source: str
    t1_channel: torch.Tensor | None = None  # Hyperfine: normalised aligned T1 (float64)
    minimum: float = 0.0
    spread: float = 1.0

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        return tuple(self.net_input.shape[2:])  # type: ignore[return-value]


def _as_tensor(data: np.ndarray, device: torch.device) -> torch.Tensor:
    # torch lacks most kernels for unsigned 16/32/64-bit; a wider signed type keeps every value and the
    # truncation semantics of the blur (values stay non-negative).
    widen = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64, np.dtype(np.uint64): np.float64}
    if data.dtype in widen:
        data = data.astype(widen[data.dtype])
    return torch.from_numpy(np.ascontiguousarray(data)).to(device)


def prepare_general(volume: InputVolume, *, ct: bool = False, multiple: int = 32,
                    device: torch.device = CPU) -> Prepared:
    """Blur + resample to 1 mm, align to RAS, zero-pad, (CT clip), min-max normalise."""
    data, aff2 = resample_to_1mm(_as_tensor(volume.data, device), volume.affine)
    data, _ = align_to_ref(data, aff2, IDENTITY)
    padded, window = pad_to(data, pad_shape(tuple(data.shape), multiple))
    del data
    if ct:
        padded.clamp_(*CT_RANGE)
    padded -= padded.min()
    top = padded.max()
    if top <= 0:
        raise InputImageError(volume.source, "image is constant after resampling; nothing to synthesise from")
    padded /= top
    return Prepared(net_input=padded.to(torch.float32)[None, None], window=window, affine=aff2,
                    header=volume.header, source=volume.source)


def prepare_channels(volumes: Sequence[InputVolume], *, multiple: int = 32,
                     device: torch.device = CPU) -> Prepared:
    """Multi-channel models trained by this package (card normalisation ``minmax``).

    The first channel is resampled to 1 mm and aligned as in :func:`prepare_general`; every other channel is
    resliced onto that grid; each is zero-padded and min-max normalised on its own, which is what the training
    generator does to each synthetic channel.
    """
    first = volumes[0]
    data, aff = resample_to_1mm(_as_tensor(first.data, device), first.affine)
    data, aligned = align_to_ref(data, aff, IDENTITY)
    shape = tuple(data.shape)
    channels = [data]
    for volume in volumes[1:]:
        channels.append(resample_like(_as_tensor(volume.data, device), volume.affine, shape, aligned))
    padded_shape = pad_shape(shape, multiple)
    stacked = []
    for volume, channel in zip(volumes, channels):
        padded, window = pad_to(channel.to(torch.float64), padded_shape)
        padded -= padded.min()
        top = padded.max()
        if top <= 0:
            raise InputImageError(volume.source, "image is constant after resampling onto the first channel's grid "
                                                 "(or outside its field of view)")
        stacked.append((padded / top).to(torch.float32))
    net_input = torch.stack(stacked)[None]
    return Prepared(net_input=net_input, window=window, affine=aff, header=first.header, source=first.source)


def prepare_hyperfine(t1: InputVolume, t2: InputVolume, *, multiple: int = 32,
                      device: torch.device = CPU) -> Prepared:
    """T1 resampled and aligned; T2 resliced onto it; the reference's (odd) channel scalings."""
    im_t1, aff_t1 = resample_to_1mm(_as_tensor(t1.data, device), t1.affine)
    im_t1, aff_t1_aligned = align_to_ref(im_t1, aff_t1, IDENTITY)
    im_t2 = resample_like(_as_tensor(t2.data, device), t2.affine, tuple(im_t1.shape), aff_t1_aligned)
    minimum = float(im_t1.min())
    spread = float((im_t1 - minimum).max()) / 3.0
    if spread <= 0:
        raise InputImageError(t1.source, "T1 is constant after resampling")
    t1_channel = im_t1 / spread  # the minimum is not subtracted: a training quirk the weights depend on
    im_t2 = im_t2 - im_t2.min()
    t2_top = im_t2.max()
    if t2_top <= 0:
        raise InputImageError(t2.source, "T2 is constant (or outside the T1's field of view)")
    im_t2 = im_t2 / t2_top * 2.0
    stacked = torch.stack([t1_channel, im_t2], dim=-1)
    padded, window = pad_to(stacked, pad_shape(tuple(im_t1.shape), multiple))
    net_input = padded.to(torch.float32).permute(3, 0, 1, 2)[None].contiguous()
    return Prepared(net_input=net_input, window=window, affine=aff_t1, header=t1.header, source=t1.source,
                    t1_channel=t1_channel, minimum=minimum, spread=spread)


@torch.inference_mode()
def predict(model: SynthSRModel, net_input: torch.Tensor, *, flip: bool, slab_rows: int | None = None,
            plan: memory.InferencePlan | None = None,
            precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Raw network outputs: pass 1, and (with ``flip``) pass 2 on the L-R flipped input, *not* flipped back.

    On a GPU both passes run as one batch.  ``plan`` (from :func:`memory.plan_inference`) may ask for tiles;
    ``precision`` is ``fp32`` (IEEE everywhere, the default), ``tf32`` (CUDA convolutions in TF32) or ``bf16``
    (activations and weights in bfloat16).  A CUDA out-of-memory error falls back to tiles sized from the free
    device memory, then to the CPU.
    """
    if precision not in memory.PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(memory.PRECISIONS)}, not {precision!r}")
    batch = model.device.type == "cuda"  # one batch of 2 fills a GPU better; on a CPU it only doubles the peak
    try:
        return _predict_on(model.net, model.device, net_input, flip=flip, slab_rows=slab_rows, plan=plan,
                           precision=precision, batch_passes=batch)
    except torch.OutOfMemoryError:
        if model.device.type != "cuda":
            raise
    shape = tuple(int(s) for s in net_input.shape[2:])
    _release_cuda()
    free, _ = torch.cuda.mem_get_info(model.device)
    tiles = memory.gpu_tile_plan(shape, model.spec, free_bytes=free, element_bytes=2 if precision == "bf16" else 4,
                                 split=True)
    log.warning("CUDA out of memory for %s: retrying in tiles of %s", shape, tiles.tile)
    try:
        return _predict_on(model.net, model.device, net_input, flip=flip, slab_rows=None, plan=tiles,
                           precision=precision, batch_passes=False)
    except torch.OutOfMemoryError:
        pass
    _release_cuda()
    log.warning("CUDA out of memory in tiles too: falling back to the CPU for %s", shape)
    cpu_net = cpu_copy(model.net)
    cpu_plan = memory.plan_inference(shape, model.spec, "cpu", tta=flip)
    return _predict_on(cpu_net, torch.device("cpu"), net_input.cpu(), flip=flip, slab_rows=cpu_plan.slab_rows,
                       plan=cpu_plan, precision="fp32", batch_passes=False)


def _release_cuda() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cpu_copy(net: UNet) -> UNet:
    """A CPU replica of a (GPU) network, leaving the original where it is."""
    # Built outside inference mode (predict runs in it): inference-mode parameters carry no version
    # counter, which the network's cache of prepared weights keys on.
    with torch.inference_mode(False):
        copy = UNet(net.spec)
        copy.load_state_dict({k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
    return copy.eval().requires_grad_(False)


def _precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if device.type != "cuda":
        return contextlib.nullcontext()
    # cuDNN convolutions default to TF32 on Ampere and later; fp32 means IEEE here.
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False,
                                      allow_tf32=precision == "tf32")


def _predict_on(net: UNet, device: torch.device, net_input: torch.Tensor, *, flip: bool, slab_rows: int | None,
                plan: memory.InferencePlan | None, precision: str,
                batch_passes: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = net_input.to(device)
    if precision == "bf16":
        x = x.to(torch.bfloat16)
    if plan is not None and plan.tiled:
        def forward(t: torch.Tensor) -> torch.Tensor:
            return tiled_forward(net, t, plan.tile, plan.margin, slab_rows=plan.slab_rows,
                                 recompute=plan.recompute)
    else:
        rows = plan.slab_rows if plan is not None else slab_rows
        recompute = plan.recompute if plan is not None else 0

        def forward(t: torch.Tensor) -> torch.Tensor:
            return net(t, slab_rows=rows, recompute=recompute).float()
    with _precision_context(device, precision):
        if flip and batch_passes and not (plan is not None and plan.tiled):
            both = forward(torch.cat([x, torch.flip(x, dims=(2,))]))
            return both[:1], both[1:]
        first = forward(x)
        second = forward(torch.flip(x, dims=(2,))) if flip else None
    return first, second


def combine_passes(first: torch.Tensor, second: torch.Tensor | None) -> torch.Tensor:
    """0.5 clip(255 p1, 0, 128) + 0.5 clip(255 flip(p2), 0, 128) in float32 (or the single pass)."""
    pred = torch.clamp(255 * first[0, 0], 0, OUTPUT_CLIP)
    if second is None:
        return pred
    pred2 = torch.clamp(255 * torch.flip(second[0, 0], dims=(0,)), 0, OUTPUT_CLIP)
    return 0.5 * pred + 0.5 * pred2


def finish_general(pred: torch.Tensor, prepared: Prepared, *, sharpen: bool = True) -> torch.Tensor:
    """Crop, unsharp-mask (no clip afterwards, as the reference), and return to the input's axis order."""
    pred = pred[prepared.window]
    if sharpen:
        pred = pred + (pred - gaussian_blur(pred, [SHARPEN_SIGMA] * 3))
    pred, _ = align_to_ref(pred, IDENTITY, prepared.affine)
    return pred


def finish_hyperfine(raw: torch.Tensor, prepared: Prepared) -> torch.Tensor:
    """Residual plus T1, back to intensities, clipped at 0, in the T1's axis order (float64)."""
    pred = raw[0, 0][prepared.window].to(torch.float64)
    pred = prepared.minimum + prepared.spread * (pred + prepared.t1_channel.to(pred.device))
    pred = torch.clamp(pred, min=0)
    pred, _ = align_to_ref(pred, IDENTITY, prepared.affine)
    return pred


def to_uint8(pred: torch.Tensor) -> np.ndarray:
    """The current FreeSurfer writer: ``clip(2 x, 0, 255)`` cast to uint8 (truncation, not rounding)."""
    return np.clip(pred.cpu().numpy() * np.float32(2), 0, 255).astype(np.uint8)


def output_image(data: np.ndarray, prepared: Prepared) -> nib.Nifti1Image:
    """Wrap ``data`` with the input header and the 1 mm affine, as nibabel does for the reference."""
    header = prepared.header
    if not isinstance(header, nib.Nifti1Header):
        header = nib.Nifti1Header.from_header(header)
    image = nib.Nifti1Image(data, prepared.affine, header.copy())
    image.set_data_dtype(data.dtype if data.dtype == np.uint8 else header.get_data_dtype())
    return image


@dataclass
class Synthesis:
    """A SynthSR output with what the reliability map needs from the same run (no second network pass)."""

    image: nib.Nifti1Image
    volumes: list[InputVolume]  # the inputs as loaded (their grids: acquisition coverage, native space)
    tta_difference: np.ndarray | None  # |pass1 - flip(pass2)| in the output's units, on its grid (None: no TTA)

    def reliability(self, slice_thickness: Sequence[float] | None = None,
                    slice_direction: Sequence[str] | None = None) -> ScanReliability:
        """The output's reliability map and QC numbers (:mod:`.reliability`).

        Per input, as BIDS sidecars give them: ``slice_thickness`` (``SliceThickness``, mm, 0 unknown) and
        ``slice_direction`` (``SliceEncodingDirection``, ``""`` unknown: the axis of the largest spacing); a
        thickness under the spacing (slice gaps) lowers the coverage between slices."""
        thickness = input_thickness([v.affine for v in self.volumes], slice_thickness, slice_direction)
        return output_reliability(np.asarray(self.image.dataobj, dtype=np.float32), self.image.affine,
                                  [(v.data.shape, v.affine) for v in self.volumes], self.tta_difference, thickness)


def pass_difference(first: torch.Tensor, second: torch.Tensor | None, prepared: Prepared) -> np.ndarray | None:
    """``|pass1 - flip(pass2)|`` of the two clipped passes :func:`combine_passes` averages, cropped and put in
    the input's axis order like the output, in the written image's units (``to_uint8``'s factor 2)."""
    if second is None:
        return None
    one = torch.clamp(255 * first[0, 0], 0, OUTPUT_CLIP)
    two = torch.clamp(255 * torch.flip(second[0, 0], dims=(0,)), 0, OUTPUT_CLIP)
    diff, _ = align_to_ref(torch.abs(one - two)[prepared.window], IDENTITY, prepared.affine)
    return (diff.cpu().numpy() * np.float32(2)).astype(np.float32)


def native_image(output: nib.Nifti1Image, volume: InputVolume) -> nib.Nifti1Image:
    """``output`` resampled (trilinear, 0 outside) onto the input scan's grid and field of view, same affine and
    shape as the input, in the output's data type (overlays on the clinical scan)."""
    data = torch.from_numpy(np.asarray(output.dataobj, dtype=np.float64))
    shape = tuple(int(s) for s in volume.data.shape[:3])
    moved = resample_like(data, np.asarray(output.affine, dtype=np.float64), shape, volume.affine).numpy()
    dtype = np.dtype(output.get_data_dtype())
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        moved = np.clip(np.rint(moved), info.min, info.max)
    header = volume.header if isinstance(volume.header, nib.Nifti1Header) else nib.Nifti1Header.from_header(
        volume.header)
    image = nib.Nifti1Image(moved.astype(dtype), volume.affine, header.copy())
    image.set_data_dtype(dtype)
    return image


def run(images: ImageLike | Sequence[ImageLike], model: str | os.PathLike[str] | SynthSRModel = DEFAULT_MODEL, *,
        ct: bool = False, flip: bool = True, sharpen: bool = True, device: str | torch.device = "auto",
        threads: int | None = None, slab_rows: int | None = -1, max_memory_gb: float | None = None,
        precision: str = "fp32") -> nib.Nifti1Image:
    """Synthesise a 1 mm MP-RAGE-like volume.

    ``images`` is one image (path or nibabel image) for a 1-channel model, ``[T1, T2]`` for the 2-channel
    Hyperfine model, or one image per channel of a model trained by this package, in the order of its card
    (``model.card.suffixes``; the output is on the first image's 1 mm grid).  General and trained models return
    uint8 on the 1 mm grid (``mri_synthsr``); the Hyperfine model returns intensities in the T1's data type
    (``mri_synthsr_hyperfine``).

    ``max_memory_gb`` bounds the process's estimated peak memory on the CPU: thinner slabs, then skips
    recomputed instead of kept, then overlapping tiles (``memory.plan_inference``; all exact up to float32
    summation order).
    ``precision`` applies to CUDA (``fp32``, ``tf32``, ``bf16``); see :func:`predict`.
    :func:`synthesise` is the same run, also returning what the reliability map needs.
    """
    return synthesise(images, model, ct=ct, flip=flip, sharpen=sharpen, device=device, threads=threads,
                      slab_rows=slab_rows, max_memory_gb=max_memory_gb, precision=precision).image


def synthesise(images: ImageLike | Sequence[ImageLike],
               model: str | os.PathLike[str] | SynthSRModel = DEFAULT_MODEL, *, ct: bool = False, flip: bool = True,
               sharpen: bool = True, device: str | torch.device = "auto", threads: int | None = None,
               slab_rows: int | None = -1, max_memory_gb: float | None = None,
               precision: str = "fp32") -> Synthesis:
    """:func:`run`, returning a :class:`Synthesis`: the image, the loaded inputs and the TTA difference."""
    memory.tune_allocator()
    if threads is not None:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    net = load_model(model, device=dev)
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if len(items) != net.in_channels:
        raise ModelError(f"model {net.name} takes {net.in_channels} image(s) per run, got {len(items)}")
    volumes = [load_volume(item) for item in items]
    prepare = functools.partial(_prepare_for(net, volumes, ct=ct), multiple=pad_multiple(net.spec), device=dev)
    if net.in_channels == 1 or net.card is not None:  # general, or a model trained by this package
        prepared, first, second = _network(net, prepare, dev, flip=flip, slab_rows=slab_rows,
                                           max_memory_gb=max_memory_gb, precision=precision)
        with _threads(1):
            difference = pass_difference(first, second, prepared)
            pred = finish_general(combine_passes(first, second), prepared, sharpen=sharpen)
            del first, second
            return Synthesis(output_image(to_uint8(pred), prepared), volumes, difference)
    # the Hyperfine model: no test-time flip (mri_synthsr_hyperfine), intensities in the T1's type
    prepared, first, _ = _network(net, prepare, dev, flip=False, slab_rows=slab_rows, max_memory_gb=max_memory_gb,
                                  precision=precision)
    with _threads(1):
        pred = finish_hyperfine(first, prepared)
        return Synthesis(output_image(pred.cpu().numpy(), prepared), volumes, None)


def _prepare_for(net: SynthSRModel, volumes: list[InputVolume], *, ct: bool) -> Callable[..., Prepared]:
    """The preprocessing of ``net``'s kind, waiting for ``multiple`` and ``device``."""
    if net.in_channels == 1:
        return functools.partial(prepare_general, volumes[0], ct=ct)
    if net.card is not None:
        return functools.partial(prepare_channels, volumes)
    if net.in_channels == 2:
        return functools.partial(prepare_hyperfine, volumes[0], volumes[1])
    raise ModelError(f"{net.path}: models with {net.in_channels} input channels are not supported")


def _network(net: SynthSRModel, prepare: Callable[[], Prepared], dev: torch.device, *, flip: bool,
             slab_rows: int | None, max_memory_gb: float | None,
             precision: str) -> tuple[Prepared, torch.Tensor, torch.Tensor | None]:
    """Every model's one path through the network, where the thread and memory rules live: ``prepare`` on one
    thread, the memory plan, the network on the cost model's threads; the input is freed before returning."""
    with _threads(1):
        prepared = prepare()
    plan = _plan(net, prepared, dev, slab_rows, max_memory_gb, flip)
    with _threads(memory.estimate_threads(prepared.padded_shape, net.spec, available=torch.get_num_threads())):
        first, second = predict(net, prepared.net_input, flip=flip, plan=plan, precision=precision)
    prepared.net_input = None  # free before post-processing
    return prepared, first, second


@contextlib.contextmanager
def _threads(wanted: int):
    """At most ``wanted`` intra-op CPU threads inside the block (never more than were set).

    Pre- and post-processing run on one thread: they are a few dozen memory-bound passes over ~50 MB, which
    a second thread barely speeds up on an idle machine and slows 3-10x on a shared one (a preempted thread
    stalls every OpenMP barrier: measured 0.2-0.5 s with 1 thread against 2.3-2.8 s with 2 for the whole
    FLAIR).  The network gets :func:`memory.estimate_threads`: all of them except for tiny networks.
    """
    before = torch.get_num_threads()
    wanted = max(1, min(int(wanted), before))
    if wanted < before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted < before:
            torch.set_num_threads(before)


def _plan(net: SynthSRModel, prepared: Prepared, dev: torch.device, slab_rows: int | None,
          max_memory_gb: float | None, tta: bool) -> memory.InferencePlan:
    rows = "auto" if slab_rows == -1 else slab_rows
    if max_memory_gb is not None and max_memory_gb <= 0:
        raise ModelError(f"max_memory_gb must be positive, got {max_memory_gb}")
    plan = memory.plan_inference(prepared.padded_shape, net.spec, dev.type, max_memory_gb=max_memory_gb,
                                 slab_rows=rows, tta=tta)
    if max_memory_gb is not None and plan.estimate_gb * memory.BOUND_HEADROOM > max_memory_gb:
        log.warning("%s: the leanest plan needs about %.2f GB (%.2f GB with the run-to-run margin), over the "
                    "bound of %.2f GB", prepared.source, plan.estimate_gb,
                    plan.estimate_gb * memory.BOUND_HEADROOM, max_memory_gb)
    return plan
