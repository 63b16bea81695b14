"""The Python API of the SynthSeg port: :func:`run` one image, get a :class:`SynthSegResult`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ..errors import UsageError
from ..model.device import pick_device
from .postprocess import postprocess
from .predict import Networks, run_networks
from .preprocess import preprocess, resample_like_input
from .tables import load_tables, volume_names
from .weights import check_widths, load_networks

ImageLike = "nib.spatialimages.SpatialImage | str | os.PathLike[str]"


@dataclass
class SynthSegResult:
    """What one ``mri_synthseg`` run gives for one image.

    ``volumes`` (mm^3, rounded to 1e-3 as the CSV has them) and ``qc`` (scores in [0, 1], rounded to 1e-4)
    keep the reference's column order; ``volumes`` holds NaN where the reference's do.
    """

    segmentation: nib.Nifti1Image  # int32 labels on the input's grid (or the 1 mm grid after resampling,
    # unless keep_geometry: then always the input's grid)
    posteriors: nib.Nifti1Image | None  # float32 (X, Y, Z, n_labels), when asked for
    volumes: dict[str, float]
    qc: dict[str, float] | None
    resampled: nib.Nifti1Image | None  # the 1 mm image the networks saw, when resampling happened
    version: str
    models: list[Path] = field(default_factory=list)
    source: str = ""
    #: dtype the volumes were computed in (float32, float64 after a crop paste): the CSV prints them as
    #: numpy scalars of this type, as the reference does
    volumes_dtype: str = "float32"
    #: the label of each posterior channel (the sorted segmentation labels, background first)
    labels: tuple[int, ...] = ()

    @property
    def subject(self) -> str:
        """The CSV's subject column: the input's file name without ``.nii.gz``."""
        return os.path.basename(self.source).replace(".nii.gz", "")


def version_name(*, robust: bool, fast: bool, v1: bool) -> str:
    if robust:
        return "SynthSeg-robust 2.0"
    return ("SynthSeg 1.0" if v1 else "SynthSeg 2.0") + (" (fast)" if fast else "")


@contextlib.contextmanager
def _cpu_mode(n: int | None) -> Iterator[None]:
    """Thread count, and denormals flushed to zero as TensorFlow's CPU kernels do: the reference's tiny
    posteriors underflow to exactly 0, which decides where its normalisation makes NaN (README 4)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    flushed = torch.set_flush_denormal(True)
    # IEEE float32 on CUDA too (cuDNN convolutions default to TF32, 10-bit mantissas: far beyond the tolerances)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if flushed:
            torch.set_flush_denormal(False)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def load_for(*, robust: bool = False, parc: bool = False, qc: bool = False, v1: bool = False,
             device: str | torch.device = "cpu",
             models_dir: str | os.PathLike[str] | None = None) -> tuple[Networks, list[Path]]:
    """Load the networks of a run once (for many images: pass the result to :func:`run` as ``networks``)."""
    if robust and v1:
        raise UsageError("--v1 cannot be used with --robust: SynthSeg-robust only came out with 2.0")
    tables = load_tables(v1=v1, flip=False)
    dev = pick_device(device)
    nets, paths = load_networks(robust=robust, parc=parc, qc=qc, v1=v1, device=dev, models_dir=models_dir)
    check_widths(nets, len(tables.labels), tables.n_groups, tables.n_qc_classes, paths)
    return nets, paths


def run(image: ImageLike, *, robust: bool = False, parc: bool = False, fast: bool = False, qc: bool = False,
        v1: bool = False, ct: bool = False, crop: list[int] | None = None, autocrop: bool = False,
        posteriors: bool = False, keep_geometry: bool = False, threads: int | None = None,
        device: str | torch.device = "cpu", models_dir: str | os.PathLike[str] | None = None,
        networks: tuple[Networks, list[Path]] | None = None) -> SynthSegResult:
    """Segment one image as ``mri_synthseg`` does (same flags, same outputs; see docs/segmentation.md).

    ``robust`` implies ``fast``; ``crop`` (1 or 3 sizes) and ``autocrop`` exclude each other.  Models come
    from ``models_dir`` (trusted as given) or the registry's folders.  ``keep_geometry`` (``--keepgeom``)
    puts the segmentation back on the input's grid (affine and shape) by nearest neighbour when the image was
    resampled to 1 mm; the posteriors, volumes and QC stay those of the 1 mm grid, as the reference's.
    """
    if crop is not None and autocrop:
        raise UsageError("--autocrop cannot be used with --crop")
    if robust and v1:
        raise UsageError("--v1 cannot be used with --robust: SynthSeg-robust only came out with 2.0")
    fast = fast or robust
    dev = pick_device(device)
    with _cpu_mode(threads):
        nets, paths = networks if networks is not None else load_for(
            robust=robust, parc=parc, qc=qc, v1=v1, device=dev, models_dir=models_dir)
        if parc and nets.parc is None or qc and nets.qc is None:
            raise UsageError("the networks given were loaded without the parcellation/QC model this run needs")
        tables = load_tables(v1=v1, flip=not fast)
        prep = preprocess(image, ct=ct, crop=crop, autocrop=autocrop)
        out = run_networks(nets, prep.image, tables, robust=robust, flip=not fast, device=dev)
        post = postprocess(out.seg, out.parc if parc else None, prep, tables, fast=fast)
    header = prep.header
    seg, seg_affine = post.seg, prep.affine
    if keep_geometry and prep.input_affine is not None and (
            tuple(seg.shape[:3]) != prep.input_shape or not np.allclose(seg_affine, prep.input_affine)):
        seg = resample_like_input(seg, seg_affine, prep.input_affine, prep.input_shape)
        seg_affine = prep.input_affine
    seg_img = nib.Nifti1Image(seg, seg_affine, header)
    seg_img.set_data_dtype(np.int32)
    post_img = None
    if posteriors:
        post_img = nib.Nifti1Image(post.posteriors.astype(np.float32), prep.affine, header)
        post_img.set_data_dtype(np.float32)
    names = volume_names(tables, parc)
    volumes = {n: v for n, v in zip(names, post.volumes.tolist())}
    scores = None
    if qc and out.qc is not None:
        values = np.around(np.clip(out.qc[1:], 0, 1), 4)
        scores = {n: float(v) for n, v in zip(tables.qc_names, values)}
    result = SynthSegResult(segmentation=seg_img, posteriors=post_img, volumes=volumes, qc=scores,
                            resampled=prep.resampled, version=version_name(robust=robust, fast=fast, v1=v1),
                            models=paths, source=prep.source, volumes_dtype=str(post.volumes.dtype),
                            labels=tuple(int(v) for v in tables.labels))
    return result
