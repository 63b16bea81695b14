"""The one Keras model mri_synthseg builds, as torch steps on one padded volume (batch 1, float32).

* 2.0/1.0: ``blur(softmax(unet(x)))``, averaged with the same on the left/right-flipped image, flipped back and
  with left/right channels swapped (``flip_indices``); ``fast``: the first pass only.
* robust: ``unet`` -> argmax -> one-hot -> ``l2l`` -> argmax -> one-hot -> ``[x, one-hot]`` -> ``unet2``
  softmax (no blur, no flip).
* parcellation: argmax -> cortex (labels 3/42) one-hot(2) -> ``[x, one-hot]`` -> ``unet_parc`` softmax -> blur
  (not with QC: that model's outputs name the layer before the blur).
* QC: argmax indices over the padded grid -> 224^3 box around the labels that are neither index 0 nor index 24
  (``MakeShape``) -> QC classes -> one-hot -> QC network -> scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .networks import blur, gaussian_blur_taps
from .tables import CORTEX_LABELS, Tables

QC_SHAPE = 224
#: MakeShape leaves this argmax index out of the box, as the reference does (label 47 in 2.0, 49 in 1.0)
QC_EXCLUDED_INDEX = 24


@dataclass
class Networks:
    """The networks a run needs; None where a step is not requested."""

    unet: nn.Module
    l2l: nn.Module | None = None  # robust: denoiser
    unet2: nn.Module | None = None  # robust: second U-Net
    parc: nn.Module | None = None
    qc: nn.Module | None = None


@dataclass
class Outputs:
    seg: np.ndarray  # (X, Y, Z, n_labels) float32 on the padded grid
    parc: np.ndarray | None
    qc: np.ndarray | None  # (n_qc_classes,) scores, background first


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(1, C, X, Y, Z) network output -> (X, Y, Z, C) softmax over the channels (contiguous: fast)."""
    return torch.softmax(logits[0].permute(1, 2, 3, 0).contiguous(), dim=-1)


def _one_hot(indices: torch.Tensor, depth: int) -> torch.Tensor:
    """(X, Y, Z) indices -> (1, depth, X, Y, Z) float32 (channels-last in memory, as the U-Nets want it)."""
    return F.one_hot(indices, depth).to(torch.float32)[None].permute(0, 4, 1, 2, 3)


def make_shape(indices: torch.Tensor, size: int = QC_SHAPE) -> torch.Tensor:
    """``MakeShape``: the (size^3) box centred on the labelled voxels, cut or zero-padded at the grid's edges."""
    shape = torch.tensor(indices.shape, dtype=torch.long)
    where = torch.nonzero((indices != 0) & (indices != QC_EXCLUDED_INDEX))
    target = torch.full((3,), size, dtype=torch.long)
    if where.shape[0] == 0:
        lo, hi = torch.zeros(3, dtype=torch.long), torch.minimum(shape, target)
    else:
        lo = torch.clamp(where.min(dim=0).values, min=0)
        hi = torch.minimum(where.max(dim=0).values + 1, shape)
    extent = hi - lo
    lo = lo - torch.tensor([math.ceil((size - int(e)) / 2) for e in extent])
    hi = hi + torch.tensor([math.floor((size - int(e)) / 2) for e in extent])
    a, b = torch.clamp(lo, min=0), torch.minimum(hi, shape)
    out = indices[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
    before, after = torch.clamp(-lo, min=0), torch.clamp(hi - shape, min=0)
    if bool((before > 0).any() or (after > 0).any()):
        out = F.pad(out, (int(before[2]), int(after[2]), int(before[1]), int(after[1]),
                          int(before[0]), int(after[0])))
    return out


@torch.no_grad()
def run_networks(nets: Networks, image: np.ndarray, tables: Tables, *, robust: bool, flip: bool,
                 device: torch.device) -> Outputs:
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    taps = gaussian_blur_taps(0.5)
    if robust:
        groups = torch.argmax(_probabilities(nets.unet(x)), dim=-1)
        groups = torch.argmax(_probabilities(nets.l2l(_one_hot(groups, tables.n_groups))), dim=-1)
        seg = _probabilities(nets.unet2(torch.cat([x, _one_hot(groups, tables.n_groups)], dim=1)))
    else:
        seg = blur(_probabilities(nets.unet(x)), taps)
        if flip:
            flipped = blur(_probabilities(nets.unet(torch.flip(x, dims=(2,)))), taps)
            flipped = torch.flip(flipped, dims=(0,))[..., torch.from_numpy(tables.flip_indices).to(device)]
            seg = (seg + flipped).mul_(0.5)
            del flipped
    index = torch.argmax(seg, dim=-1)  # (X, Y, Z)
    parc = None
    if nets.parc is not None:
        labels = torch.from_numpy(tables.labels.astype(np.int64)).to(device)[index]
        cortex = torch.isin(labels, torch.tensor(CORTEX_LABELS, device=device)).long()
        parc = _probabilities(nets.parc(torch.cat([x, _one_hot(cortex, 2)], dim=1)))
        if nets.qc is None:  # with QC the reference's model returns the parcellation before its blur
            parc = blur(parc, taps)
    qc = None
    if nets.qc is not None:
        box = make_shape(index)
        classes = torch.from_numpy(tables.qc_classes.astype(np.int64)).to(device)[box]
        qc = nets.qc(_one_hot(classes, tables.n_qc_classes))[0].cpu().numpy()
    return Outputs(seg=seg.cpu().numpy(), parc=None if parc is None else parc.cpu().numpy(), qc=qc)
