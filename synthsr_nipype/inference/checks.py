"""Whether an image can be processed: the one home of the header and data checks.

Used by ``synthsr`` (through :func:`~synthsr_nipype.inference.io.load_volume`) and by
``synthsr-bids`` (through :func:`~synthsr_nipype.bids.scan.describe_scan`, before any node runs).

Header checks read the header as it is stored: nibabel's loader "fixes" zero voxel sizes to 1
and negative ones to their absolute value, so a check after ``nib.load`` would pass a scan
whose geometry is wrong.  They never read the voxel data, so they are cheap enough to run on a
whole dataset.  What only the data can tell (NaN/Inf, a constant image, a truncated stream) is
:func:`data_problem` and the reader's errors, found when the scan is processed.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

#: Headers are float32: qform/sform agreement and orthonormality are judged at that precision.
QSFORM_ATOL_MM = 0.1
ORTHO_ATOL = 1e-3
#: More voxels than any MRI scan holds (2048 x 1024 x 1024): a header claiming more is corrupted.
#: (The data size cannot be checked against the file: header-only images must still plan.)
MAX_VOXELS = 2**31
GZIP_MAGIC = b"\x1f\x8b"
#: NIfTI datatype codes with no scalar meaning for SynthSR.
RGB_CODES = {128: "RGB (24-bit colour)", 2304: "RGBA (32-bit colour)"}
COMPLEX_CODES = {32: "complex64", 1792: "complex128", 2048: "complex256"}


def header_problem(source: str | os.PathLike[str] | nib.spatialimages.SpatialImage, *,
                   max_frames: int = 1) -> str:
    """Why the header of ``source`` (a path or a loaded image) rules it out, or ``""``.

    ``max_frames``: how many volumes a 4-D image may hold (``synthsr`` keeps the first of up to
    10 channels, as ``mri_synthsr`` does; the BIDS-App takes 3-D scans only).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            header, file_problem = _raw_header(path)
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        if file_problem:
            return file_problem
        problem = _stored_header_problem(header, path)
        if problem:
            return problem
        header = _as_loaded(header)
    else:
        header = source.header
    problem = _shape_problem(tuple(int(s) for s in header.get_data_shape()), max_frames)
    if problem:
        return problem
    return _geometry_problem(header)


def data_problem(data: np.ndarray) -> str:
    """Why the voxel values rule the image out (non-finite or constant), or ``""``."""
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            return f"image contains {bad} NaN or infinite voxel value(s)"
    if data.size == 0:
        return "image holds no voxels"
    lo, hi = data.min(), data.max()
    if lo == hi:
        return f"image is constant (every voxel is {lo}); nothing to synthesise from"
    return ""


# ------------------------------------------------------------------------------------ internals
def _raw_header(path: Path):
    """The header exactly as stored (no nibabel fix-ups), or a problem with the file itself."""
    if not path.exists():
        return None, "file does not exist" + (" (dangling symbolic link)" if path.is_symlink() else "")
    if path.is_dir():
        return None, "is a folder, not an image"
    size = path.stat().st_size
    if size == 0:
        return None, "empty file (0 bytes)"
    name = path.name.lower()
    if name.endswith((".gz", ".mgz")):
        with open(path, "rb") as raw:
            if raw.read(2) != GZIP_MAGIC:
                return None, "unreadable image (named .gz but not gzip-compressed)"
    if name.endswith((".mgz", ".mgh")):
        try:
            return nib.load(path).header, ""
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for non-images
            return None, f"unreadable image (not MGH: {_short(exc)})"
    try:
        with nib.openers.ImageOpener(str(path), "rb") as stream:
            block = stream.read(540)
    except (EOFError, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and not _is_decompression_error(exc):
            raise
        return None, f"unreadable image (gzip stream corrupted or truncated: {_short(exc)})"
    if len(block) < 348:
        return None, f"unreadable image (too short for a NIfTI header: {len(block)} bytes)"
    for klass, size_field in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        if size_field in (struct.unpack("<i", block[:4])[0], struct.unpack(">i", block[:4])[0]):
            if len(block) < size_field:
                return None, f"unreadable image (too short for a NIfTI-2 header: {len(block)} bytes)"
            try:
                return klass.from_fileobj(io.BytesIO(block[:size_field]), check=False), ""
            except Exception as exc:  # noqa: BLE001 - a header nibabel cannot parse at all
                return None, f"unreadable image (NIfTI header: {_short(exc)})"
    return None, "unreadable image (no NIfTI-1 or NIfTI-2 header)"


def _as_loaded(header):
    """The header as ``nib.load`` gives it to ``mri_synthsr``: with nibabel's fix-ups (a negative
    voxel size made positive), which it logs and the user hears from header_warnings instead."""
    if not isinstance(header, nib.Nifti1Header):
        return header
    with nib.imageglobals.LoggingOutputSuppressor():
        return type(header).from_fileobj(io.BytesIO(header.binaryblock), check=True)


def _is_decompression_error(exc: OSError) -> bool:
    return type(exc).__name__ in ("BadGzipFile",) or "gzip" in str(exc).lower() or "compressed" in str(exc).lower()


def _stored_header_problem(header, path: Path) -> str:
    """Checks that need the stored header: magic, datatype, voxel sizes, size against the file."""
    if isinstance(header, nib.Nifti1Header):
        magic = bytes(header["magic"]).rstrip(b"\x00")
        if magic not in (b"n+1", b"ni1", b"n+2", b"ni2"):
            return f"unreadable image (not NIfTI: magic {magic!r})"
        dim = [int(d) for d in header["dim"]]
        if not 1 <= dim[0] <= 7:
            return f"invalid header: dim[0] = {dim[0]} (must be 1..7)"
        if any(d < 1 for d in dim[1:dim[0] + 1]):
            return f"invalid header: dimensions {dim[1:dim[0] + 1]} (each must be >= 1)"
        code = int(header["datatype"])
        if code in RGB_CODES:
            return f"{RGB_CODES[code]} image; SynthSR needs one scalar intensity per voxel"
        if code in COMPLEX_CODES:
            return f"{COMPLEX_CODES[code]} (complex-valued) image; give magnitude images"
        try:
            itemsize = header.get_data_dtype().itemsize
        except Exception:  # noqa: BLE001 - nibabel's dtype lookup raises several types
            return f"unknown NIfTI datatype code {code}"
        pixdim = _bad_pixdim(header)
        # With a sform, pixdim places nothing. Without: NaN makes nibabel's affine NaN and zero
        # becomes 1 mm silently (a wrong result); a negative size it takes as its absolute value
        # (warned, processed: header_warnings).
        if int(header["sform_code"]) == 0 and any(not np.isfinite(z) or z == 0 for z in pixdim):
            return f"voxel sizes must be finite and positive (header pixdim {pixdim})"
        n_voxels = int(np.prod(np.asarray(dim[1:dim[0] + 1], dtype=object)))
        if n_voxels > MAX_VOXELS:
            return (f"header claims {'x'.join(map(str, dim[1:dim[0] + 1]))} voxels "
                    f"({n_voxels * itemsize / 1e9:.3g} GB); no MRI scan is that large (corrupted header?)")
    return ""


def _shape_problem(shape: tuple[int, ...], max_frames: int) -> str:
    spatial = [s for s in shape[:3] if s > 1]
    if len(shape) < 3 or len(spatial) < 3:
        return f"image is {len(spatial)}-D (shape {shape}); SynthSR needs a 3-D volume"
    extra = [s for s in shape[3:] if s > 1]
    if len(extra) > 1:
        return f"image is {3 + len(extra)}-D (shape {shape}); SynthSR needs a 3-D volume"
    frames = extra[0] if extra else 1
    if frames > max_frames:
        return (f"4D image with {frames} frames (shape {shape}); "
                + ("give one 3-D volume" if max_frames == 1 else f"at most {max_frames} channels"))
    return ""


def _geometry_problem(header) -> str:
    """Voxel sizes and the affine nibabel places the image with (qform/sform oddities the
    reference processes are :func:`header_warnings`, not problems)."""
    uses_sform = isinstance(header, nib.Nifti1Header) and int(header["sform_code"]) > 0
    zooms = np.asarray(header.get_zooms()[:3], dtype=np.float64)
    if not uses_sform and (not np.all(np.isfinite(zooms)) or np.any(zooms <= 0)):
        return f"voxel sizes must be finite and positive (got {zooms.tolist()})"
    affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    problem = affine_problem(affine)
    if problem:
        return problem
    return ""


class HeaderWarning(UserWarning):
    """A header oddity the reference processes anyway (so do we), said once per file."""

    def __init__(self, source: str, note: str):
        super().__init__(f"{source}: {note}")
        self.source, self.note = source, note


def header_warnings(source: str | os.PathLike[str] | nib.spatialimages.SpatialImage) -> list[str]:
    """What is odd but processed in the header of ``source`` (a path or a loaded image).

    The one home of these notes: ``synthsr``/``synthsr-hyperfine`` (through
    :func:`~synthsr_nipype.inference.io.load_volume`), the BIDS-App's console, the SynthSR
    node's sidecar and the per-subject report all say these words.  The image is placed as
    nibabel's ``img.affine`` (what ``mri_synthsr`` uses): the sform when ``sform_code > 0``,
    else the qform, else a fallback from the voxel sizes.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            header, problem = _raw_header(Path(source))
        except OSError:
            return []
        if problem:
            return []
    else:
        header = source.header
    if not isinstance(header, nib.Nifti1Header):  # NIfTI-2 derives from NIfTI-1; MGH has one affine
        return []
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    pixdim = _bad_pixdim(header)
    if pixdim and scode > 0:  # the qform is built from pixdim too: this note says it all
        return [f"voxel sizes in the header (pixdim {pixdim}) are not finite and positive; using "
                "the sform's, which places the image (as nibabel and mri_synthsr do)"]
    notes = []
    if pixdim:  # only negative ones get here without a sform (header_problem)
        notes.append(f"negative voxel size in the header (pixdim {pixdim}); using its absolute value "
                     "(as nibabel and mri_synthsr do): check the orientation")
    if qcode == 0 and scode == 0:
        return notes + ["neither qform nor sform is set; placed with nibabel's fallback affine from the voxel "
                "sizes (pixdim), as mri_synthsr does: the output's position in space is arbitrary"]
    if qcode > 0 and scode > 0:
        shape = header.get_data_shape()
        # Where the two put the corners of the volume, in mm: sub-0.1 mm is float32 rounding.
        corners = np.array([[i, j, k, 1.0] for i in (0, max(shape[0] - 1, 0))
                            for j in (0, max(shape[1] - 1, 0)) for k in (0, max(shape[2] - 1, 0))]).T
        with np.errstate(all="ignore"):
            qform, sform = header.get_qform(), header.get_sform()
            diff = float(np.abs((qform - sform) @ corners).max())
        if not np.isfinite(diff):
            return notes + ["the qform is not finite; using the sform (as nibabel and mri_synthsr do)"]
        if diff > QSFORM_ATOL_MM:
            return notes + [f"qform and sform disagree by up to {diff:.3g} mm; using the sform "
                    "(as nibabel and mri_synthsr do)"]
    return notes


def _bad_pixdim(header) -> list[float]:
    """The stored voxel sizes when one is NaN, infinite, zero or negative (nibabel's zooms hide
    the last two), else ``[]``."""
    ndim = min(max(int(header["dim"][0]), 1), 3)
    pixdim = np.asarray(header["pixdim"][1:1 + ndim], dtype=np.float64)
    if np.all(np.isfinite(pixdim)) and np.all(pixdim > 0):
        return []
    return pixdim.tolist()


def affine_problem(affine: np.ndarray) -> str:
    """Why a voxel-to-world affine cannot place the image (non-finite, singular, sheared), or ``""``."""
    if not np.isfinite(affine).all():
        return "affine (qform/sform) contains NaN or infinite values"
    rzs = affine[:3, :3]
    sizes = np.linalg.norm(rzs, axis=0)
    if np.any(sizes <= 0):
        return f"zero voxel size in the affine (column norms {np.round(sizes, 6).tolist()})"
    if abs(np.linalg.det(rzs)) <= 1e-6 * float(np.prod(sizes)):
        return "singular affine: voxel axes are not independent (check qform/sform)"
    cosines = rzs / sizes
    if not np.allclose(cosines.T @ cosines, np.eye(3), atol=ORTHO_ATOL):
        return "sheared affine: direction cosines are not orthonormal (check qform/sform)"
    return ""


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
