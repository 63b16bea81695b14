"""The SynthSR pipeline as pure functions: prepare -> network (+ flip TTA) -> finish -> image.

``run`` composes them and is the one entry point used by the commands, the Nipype interface and the tests.
The steps follow FreeSurfer's ``mri_synthsr`` (general) and ``mri_synthsr_hyperfine`` numerically; every
quirk kept is listed in ``../shared/fixtures/tf-reference/README.md`` section 3.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch

from ..errors import InputImageError, ModelError
from ..model import DEFAULT_MODEL, SynthSRModel, load_model
from .geometry import align_to_ref, gaussian_blur, pad_shape, pad_to, resample_like, resample_to_1mm
from .io import InputVolume, load_volume

ImageLike = "nib.spatialimages.SpatialImage | str | os.PathLike[str]"
CT_RANGE = (0.0, 80.0)
OUTPUT_CLIP = 128.0
SHARPEN_SIGMA = 1.5
IDENTITY = np.eye(4)


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


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` takes CUDA, then Apple MPS, then the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was requested but no CUDA device is available")
    return torch.device(device)


def pad_multiple(model: SynthSRModel) -> int:
    # The reference always pads to multiples of 32 (n_levels=5 in preprocess), whatever the network depth.
    return max(32, 2 ** (model.spec.n_levels - 1))


def _as_tensor(data: np.ndarray, device: torch.device) -> torch.Tensor:
    # torch lacks most kernels for unsigned 16/32/64-bit; a wider signed type keeps every value and the
    # truncation semantics of the blur (values stay non-negative).
    widen = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64, np.dtype(np.uint64): np.float64}
    if data.dtype in widen:
        data = data.astype(widen[data.dtype])
    return torch.from_numpy(np.ascontiguousarray(data)).to(device)


def prepare_general(volume: InputVolume, *, ct: bool = False, multiple: int = 32,
                    device: torch.device = torch.device("cpu")) -> Prepared:
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


def prepare_hyperfine(t1: InputVolume, t2: InputVolume, *, multiple: int = 32,
                      device: torch.device = torch.device("cpu")) -> Prepared:
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
def predict(model: SynthSRModel, net_input: torch.Tensor, *, flip: bool,
            slab_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Raw network outputs: pass 1, and (with ``flip``) pass 2 on the L-R flipped input, *not* flipped back."""
    x = net_input.to(model.device)
    if flip and x.device.type != "cpu":
        both = model.net(torch.cat([x, torch.flip(x, dims=(2,))]), slab_rows=slab_rows)
        return both[:1], both[1:]
    first = model.net(x, slab_rows=slab_rows)
    second = model.net(torch.flip(x, dims=(2,)), slab_rows=slab_rows) if flip else None
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


def default_slab_rows(model: SynthSRModel, device: torch.device) -> int | None:
    """Slabbed evaluation of the full-resolution level keeps CPU memory low; GPUs take the whole volume."""
    return 32 if device.type == "cpu" and model.spec.base_features >= 8 else None


def run(images: "ImageLike | Sequence[ImageLike]", model: "str | os.PathLike[str] | SynthSRModel" = DEFAULT_MODEL, *,
        ct: bool = False, flip: bool = True, sharpen: bool = True, device: str | torch.device = "auto",
        threads: int | None = None, slab_rows: int | None = -1) -> nib.Nifti1Image:
    """Synthesise a 1 mm MP-RAGE-like volume.

    ``images`` is one image (path or nibabel image) for a 1-channel model, or ``[T1, T2]`` for the
    2-channel Hyperfine model.  General models return uint8 on the 1 mm grid (``mri_synthsr``); the Hyperfine
    model returns intensities in the T1's data type (``mri_synthsr_hyperfine``).
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    net = load_model(model, device=dev)
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if len(items) != net.in_channels:
        raise ModelError(f"model {net.name} takes {net.in_channels} image(s) per run, got {len(items)}")
    volumes = [load_volume(item) for item in items]
    rows = default_slab_rows(net, dev) if slab_rows == -1 else slab_rows
    multiple = pad_multiple(net)
    if net.in_channels == 1:
        prepared = prepare_general(volumes[0], ct=ct, multiple=multiple, device=dev)
        first, second = predict(net, prepared.net_input, flip=flip, slab_rows=rows)
        prepared.net_input = None  # free before post-processing
        pred = finish_general(combine_passes(first, second), prepared, sharpen=sharpen)
        return output_image(to_uint8(pred), prepared)
    if net.in_channels == 2:
        prepared = prepare_hyperfine(volumes[0], volumes[1], multiple=multiple, device=dev)
        first, _ = predict(net, prepared.net_input, flip=False, slab_rows=rows)
        pred = finish_hyperfine(first, prepared)
        return output_image(pred.cpu().numpy(), prepared)
    raise ModelError(f"{net.path}: models with {net.in_channels} input channels are not supported")
