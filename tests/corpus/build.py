"""Build the corpus: one BIDS dataset where good subjects sit beside broken and odd scans.

Every case is a :class:`Case`: where its file is, its class, and what each command must do with
it (``None``: the case does not apply to that command; ``""``: processed; otherwise words that
the one console line naming the file must contain).  Headers are patched byte by byte where
nibabel would refuse to write them (zero or negative voxel sizes, RGB codes, absurd sizes).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

#: Refused from the header, before any node runs.
HEADER = "header"
#: Found only when the voxel data is read: one line per scan, the rest of the dataset runs.
DATA = "data"
#: BIDS-level: names pybids does not index, broken sidecars, duplicates.
BIDS = "bids"
#: Odd but valid: must be processed like any good scan.
ODD = "odd"
#: Plain good subjects.
GOOD = "good"


@dataclass
class Case:
    name: str
    klass: str
    relpath: str  # inside the dataset (the image, or the odd entry)
    bids: str | None  # words of the console line, "" = processed, None = not applicable
    synthsr: str | None
    subject: str = ""
    #: processed, with one console line ``WARNING: <file>: ...`` containing these words
    warning: str = ""

    @property
    def filename(self) -> str:
        return Path(self.relpath).name


def _smooth_volume(seed: int, shape=(36, 40, 14)) -> np.ndarray:
    """A head-like smooth blob with texture (the tiny model needs no anatomy)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    ball = np.clip(1.2 - np.sqrt((grid**2).sum(0)), 0, None)
    texture = gaussian_filter(rng.normal(size=shape), 1.5)
    return (ball * 600 + texture * 80 + 40).clip(0, None).astype(np.float32)


def _affine(zooms=(1.6, 1.6, 5.0)) -> np.ndarray:
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = -np.asarray(zooms) * np.asarray((36, 40, 14)) / 2
    return aff


def _image(seed: int, *, zooms=(1.6, 1.6, 5.0), dtype=np.float32, shape=(36, 40, 14)) -> nib.Nifti1Image:
    data = _smooth_volume(seed, shape).astype(dtype)
    img = nib.Nifti1Image(data, _affine(zooms))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    return img


def _patch_header(path: Path, **fields) -> None:
    """Rewrite header fields of a saved .nii(.gz) exactly as given (nibabel's writer would
    recompute pixdim from the affine and refuse odd codes)."""
    raw = path.read_bytes()
    gz = path.name.endswith(".gz")
    if gz:
        raw = gzip.decompress(raw)
    size = struct.unpack("<i", raw[:4])[0]
    klass = nib.Nifti2Header if size == 540 else nib.Nifti1Header
    header = klass.from_fileobj(io.BytesIO(raw[:size]), check=False)
    for key, value in fields.items():
        header[key] = value
    block = header.binaryblock + raw[size:]
    path.write_bytes(gzip.compress(block, mtime=0) if gz else block)


def _sidecar(path: Path, text: str | None = None) -> None:
    name = path.name.replace(".nii.gz", ".json").replace(".nii", ".json")
    path.with_name(name).write_text(text if text is not None else json.dumps({"SliceThickness": 5}))


def _save(root: Path, relpath: str, img, *, sidecar: bool = True) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    if sidecar:
        _sidecar(path)
    return path


def _anat(sub: str, name: str, ext: str = ".nii.gz") -> str:
    return f"sub-{sub}/anat/sub-{sub}_{name}{ext}"


def build_corpus(root: Path) -> tuple[Path, list[Case]]:
    """Write the dataset under ``root / "bids"``; return it and its cases."""
    bids = root / "bids"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "synthsr corpus", "BIDSVersion": "1.9.0", "License": "CC0"}))
    (bids / "README").write_text("Good subjects beside broken and odd scans (synthsr-nipype tests).\n")
    cases: list[Case] = []

    def add(name, klass, sub, relpath, bids_words, synthsr_words, warning=""):
        cases.append(Case(name, klass, relpath, bids_words, synthsr_words, subject=sub, warning=warning))

    # ---------------------------------------------------------------- good subjects
    _save(bids, _anat("g01", "T1w"), _image(1))
    add("one good scan", GOOD, "g01", _anat("g01", "T1w"), "", "")
    _save(bids, _anat("g02", "T2w"), _image(2))
    _save(bids, _anat("g02", "FLAIR"), _image(3, zooms=(1.4, 1.4, 6.0)))
    add("two good scans, fused", GOOD, "g02", _anat("g02", "T2w"), "", "")
    add("two good scans, fused (2nd)", GOOD, "g02", _anat("g02", "FLAIR"), "", "")

    # ---------------------------------------------------------------- odd but valid
    def odd(name, sub, img, *, ext=".nii.gz", suffix="T1w", synthsr=""):
        rel = _anat(sub, suffix, ext)
        _save(bids, rel, img)
        add(name, ODD, sub, rel, "", synthsr)

    one_frame = _image(4)
    odd("4-D with one frame", "o01", nib.Nifti1Image(one_frame.get_fdata()[..., None].astype(np.float32),
                                                     one_frame.affine))
    odd("uncompressed .nii", "o02", _image(5), ext=".nii")
    scaled = _image(6, dtype=np.int16)
    scaled.header.set_slope_inter(0.5, 10)
    odd("int16 with scl_slope/inter", "o03", scaled)
    oblique = _image(7)
    rot = np.array([[1, 0, 0], [0, np.cos(0.4), -np.sin(0.4)], [0, np.sin(0.4), np.cos(0.4)]])
    aff = oblique.affine.copy()
    aff[:3, :3] = rot @ aff[:3, :3]
    odd("oblique affine", "o04", nib.Nifti1Image(oblique.get_fdata(dtype=np.float32), aff))
    lps = _image(8)
    odd("LPS orientation", "o05", nib.Nifti1Image(lps.get_fdata(dtype=np.float32)[::-1, ::-1],
                                                  np.diag([-1.6, -1.6, 5.0, 1]) @ lps.affine))
    sform_only = _image(9)
    sform_only.header.set_qform(None, code=0)
    odd("sform only", "o06", sform_only)
    odd("float64 voxels", "o07", _image(10, dtype=np.float64))
    odd("uint8 voxels", "o08", _image(11, dtype=np.uint8))

    # ---------------------------------------------------------------- refused from the header
    def header_case(name, sub, words, *, build, synthsr=None, ext=".nii.gz", suffix="T1w"):
        rel = _anat(sub, suffix, ext)
        path = bids / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path)
        if path.is_file() and not path.is_symlink():
            _sidecar(path)
        add(name, HEADER, sub, rel, words, words if synthsr is None else synthsr)

    def saved(img):
        return lambda path: nib.save(img, path)

    def patched(img, **fields):
        def build(path):
            nib.save(img, path)
            _patch_header(path, **fields)
        return build

    header_case("random bytes named .nii.gz", "h01", "unreadable image",
                build=lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)))
    header_case("empty file", "h02", "empty file", build=lambda p: p.write_bytes(b""))
    header_case("gzip of plain text", "h03", "unreadable image",
                build=lambda p: p.write_bytes(gzip.compress(b"patient notes, not an image\n" * 40)))
    header_case("2-D image", "h04", "2-D", build=saved(nib.Nifti1Image(_smooth_volume(1)[..., 0], np.eye(4))))
    header_case("single slice", "h05", "2-D",
                build=saved(nib.Nifti1Image(_smooth_volume(1)[..., :1], np.eye(4))))
    frames5 = np.stack([_smooth_volume(s) for s in range(5)], -1)
    header_case("4-D, 5 frames", "h06", "4D image with 5 frames", synthsr="",  # synthsr keeps channel 1
                build=saved(nib.Nifti1Image(frames5, _affine())))
    frames12 = np.repeat(_smooth_volume(2)[..., None], 12, -1)
    header_case("4-D, 12 frames", "h07", "4D image with 12 frames", build=saved(nib.Nifti1Image(frames12, _affine())))
    header_case("5-D image", "h08", "5-D",
                build=saved(nib.Nifti1Image(np.repeat(frames5[..., None], 2, -1), _affine())))
    base = _image(3)
    pix = base.header["pixdim"].copy()
    header_case("singular affine", "h12", "singular affine",
                build=patched(base, qform_code=0, srow_x=[1.6, 1.6, 0, 0], srow_y=[1.6, 1.6, 0, 0]))
    header_case("sheared affine", "h13", "sheared affine",
                build=patched(base, qform_code=0, srow_x=[1.6, 0.8, 0, -20]))
    # processed like mri_synthsr (nibabel's img.affine), with a warning: see the odd cases below
    def warned_case(name, sub, words, *, build):
        rel = _anat(sub, "T1w")
        path = bids / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path)
        _sidecar(path)
        add(name, ODD, sub, rel, "", "", warning=words)

    warned_case("qform/sform disagree by 40 mm", "o14", "qform and sform disagree by up to 40 mm; using the sform",
                build=patched(base, srow_x=[1.6, 0, 0, base.affine[0, 3] + 40]))
    warned_case("no qform, no sform", "o15", "neither qform nor sform is set",
                build=patched(base, qform_code=0, sform_code=0))
    # pixdim places nothing when the sform is set: nibabel's img.affine is the sform
    pixdim_note = "are not finite and positive; using the sform's"
    warned_case("NaN voxel size, valid sform", "o09", pixdim_note,
                build=patched(base, pixdim=np.where(np.arange(8) == 2, np.nan, pix)))
    warned_case("zero voxel size, valid sform", "o10", pixdim_note,
                build=patched(base, pixdim=np.where(np.arange(8) == 3, 0.0, pix)))
    warned_case("negative voxel size, valid sform", "o11", pixdim_note,
                build=patched(base, pixdim=np.where(np.arange(8) == 1, -1.6, pix)))
    header_case("NaN voxel size, no sform", "h09", "voxel sizes must be finite and positive",
                build=patched(base, sform_code=0, pixdim=np.where(np.arange(8) == 2, np.nan, pix)))
    header_case("zero voxel size, no sform", "h10", "voxel sizes must be finite and positive",
                build=patched(base, sform_code=0, pixdim=np.where(np.arange(8) == 3, 0.0, pix)))
    # nibabel (so mri_synthsr) takes a negative size's absolute value when the qform places the image
    warned_case("negative voxel size, no sform", "o12", "negative voxel size in the header",
                build=patched(base, sform_code=0, pixdim=np.where(np.arange(8) == 1, -1.6, pix)))
    header_case("infinite sform", "h16", "NaN or infinite",
                build=patched(base, qform_code=0, srow_y=[0, np.inf, 0, 0]))
    header_case("RGB datatype", "h17", "RGB", build=patched(_image(4, dtype=np.uint8), datatype=128, bitpix=24))
    header_case("RGBA datatype", "h18", "RGBA", build=patched(_image(4, dtype=np.uint8), datatype=2304, bitpix=32))
    header_case("complex voxels", "h19", "complex",
                build=saved(nib.Nifti1Image(_smooth_volume(5).astype(np.complex64), _affine())))
    header_case("NIfTI-1 claiming 32767^3 voxels", "h20", "no MRI scan is that large",
                build=patched(base, dim=[3, 32767, 32767, 32767, 1, 1, 1, 1]))
    header_case("NIfTI-2 claiming 100000^3 voxels", "h21", "no MRI scan is that large",
                build=patched(nib.Nifti2Image(_smooth_volume(6), _affine()),
                              dim=[3, 100000, 100000, 100000, 1, 1, 1, 1]))
    header_case("zero-length dimension", "h22", "dimensions",
                build=patched(base, dim=[3, 36, 0, 14, 1, 1, 1, 1]))
    header_case("bad magic", "h23", "unreadable image", build=patched(base, magic=b"xyz"))
    header_case("unknown datatype code", "h24", "datatype", build=patched(base, datatype=999))
    header_case("dangling symlink", "h25", "does not exist",
                build=lambda p: p.symlink_to(p.parent / "gone.nii.gz"))

    # ---------------------------------------------------------------- found in the data
    def data_case(name, sub, words, *, build, ext=".nii.gz"):
        rel = _anat(sub, "T1w", ext)
        path = bids / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path)
        _sidecar(path)
        add(name, DATA, sub, rel, words, words)

    def truncated(ext):
        def build(path):
            full = path.with_name("full" + ext)
            nib.save(_image(12), full)
            raw = full.read_bytes()
            full.unlink()
            path.write_bytes(raw[: len(raw) // 2])
        return build

    def with_values(*cells):
        data = _smooth_volume(13)
        for index, value in cells:
            data[index] = value
        return saved(nib.Nifti1Image(data, _affine()))

    data_case("truncated .nii.gz", "d01", "truncated", build=truncated(".nii.gz"))
    data_case("truncated .nii", "d02", "truncated", build=truncated(".nii"), ext=".nii")
    data_case("NaN voxels", "d03", "NaN or infinite", build=with_values(((3, 4, 5), np.nan)))
    data_case("Inf voxels", "d04", "NaN or infinite", build=with_values(((3, 4, 5), np.inf), ((1, 1, 1), -np.inf)))
    data_case("constant image", "d05", "constant",
              build=saved(nib.Nifti1Image(np.full((36, 40, 14), 7, np.int16), _affine())))
    data_case("all zeros", "d06", "constant",
              build=saved(nib.Nifti1Image(np.zeros((36, 40, 14), np.float32), _affine())))

    def header_only(path):
        img = _image(14)
        buf = img.header.copy()
        buf["vox_offset"] = 352
        path.write_bytes(gzip.compress(buf.binaryblock + b"\0" * 4, mtime=0))
    data_case("header-only image (no voxel data)", "d07", "truncated", build=header_only)

    # ---------------------------------------------------------------- BIDS-level
    rel = _anat("s01", "T1w")
    _save(bids, rel, _image(15), sidecar=False)
    _sidecar(bids / rel, "{SliceThickness: 5,")  # not JSON
    add("sidecar that is not JSON", BIDS, "s01", rel, "sidecar", "")
    rel = _anat("s02", "T2w")
    (bids / rel).mkdir(parents=True)
    add("folder named like an image", BIDS, "s02", rel, "folder", None)
    rel = "sub-s03/anat/sub-s03_acq-a b_T1w.nii.gz"
    _save(bids, rel, _image(16))
    add("space in the file name", BIDS, "s03", rel, "not a valid BIDS", "")
    rel = "sub-s04/anat/sub-s04_acq-\u00fcber_T1w.nii.gz"
    _save(bids, rel, _image(17))
    add("non-ASCII entity", BIDS, "s04", rel, "not a valid BIDS", "")
    # A good scan beside a .nii twin with the same entities: the twin is not processed.
    _save(bids, _anat("s05", "T1w", ".nii"), _image(18))
    rel = _anat("s05", "T1w")
    _save(bids, rel, _image(18), sidecar=False)
    add("same entities as another scan", BIDS, "s05", rel, "same entities", "")
    add("good scan beside its twin", GOOD, "s05", _anat("s05", "T1w", ".nii"), "", "")
    # A good subject with one broken scan beside: processed with the good one.
    _save(bids, _anat("s06", "T1w"), _image(19))
    add("good scan beside a refused one", GOOD, "s06", _anat("s06", "T1w"), "", "")
    rel = _anat("s06", "T2w")
    nib.save(_image(20), bids / rel)
    _sidecar(bids / rel)
    _patch_header(bids / rel, sform_code=0,  # without a sform, a zero size is refused (h10)
                  pixdim=np.where(np.arange(8) == 3, 0.0, _image(20).header["pixdim"]))
    add("zero voxel size beside a good scan", HEADER, "s06", rel, "voxel sizes must be finite and positive",
        "voxel sizes must be finite and positive")
    return bids, cases


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (files hashed, links by target, folders by name) with its mode
    and mtime: inputs must come out of a run exactly as they went in."""
    import hashlib

    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                out[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                out[rel] = f"dir:{st.st_mode:o}"
            else:
                out[rel] = f"{hashlib.sha256(path.read_bytes()).hexdigest()}:{st.st_mode:o}:{st.st_mtime_ns}"
    return out
