"""Scan description and header sanity (only headers are read)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from synthsr_nipype.bids import describe_scan, header_problem
from synthsr_nipype.inference.checks import header_warnings


def _img(shape=(8, 9, 10), zooms=(1.0, 1.0, 3.0), affine=None, dtype=np.int16):
    if affine is None:
        affine = np.diag([*zooms, 1.0])
    img = nib.Nifti1Image(np.zeros(shape, dtype=dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def _describe(tmp_path, img, name="sub-01_T1w.nii.gz"):
    path = tmp_path / name
    img.to_filename(path)
    return describe_scan(path, entities={"subject": "01", "suffix": "T1w"}, relpath=name)


def test_sane_scan_is_described(tmp_path):
    info = _describe(tmp_path, _img())
    assert info.usable and info.reason == ""
    assert info.shape == [8, 9, 10] and info.zooms == [1.0, 1.0, 3.0]
    assert info.voxel_volume == pytest.approx(3.0) and info.fov_mm == [8.0, 9.0, 30.0]
    assert info.orientation == "RAS"


def test_lps_orientation(tmp_path):
    info = _describe(tmp_path, _img(affine=np.diag([-1.0, -1.0, 3.0, 1.0])))
    assert info.orientation == "LPS"


def test_sheared_affine(tmp_path):
    aff = np.diag([1.0, 1.0, 3.0, 1.0])
    aff[0, 1] = 0.5
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), aff)
    img.set_sform(aff, code=1)
    img.header["qform_code"] = 0
    info = _describe(tmp_path, img)
    assert not info.usable and "orthonormal" in info.reason


def test_qform_sform_disagree(tmp_path):
    img = _img()
    moved = img.affine.copy()
    moved[0, 3] += 5
    img.set_sform(moved, code=1)
    info = _describe(tmp_path, img)
    # processed on the sform's grid, as nibabel's img.affine and mri_synthsr: a warning, not a refusal
    assert info.usable, info.reason
    notes = header_warnings(tmp_path / "sub-01_T1w.nii.gz")
    print("header warnings:", notes)
    assert len(notes) == 1 and "qform and sform disagree by up to 5 mm; using the sform" in notes[0]


def test_qform_sform_float_noise_is_agreement(tmp_path):
    img = _img()
    noisy = img.affine.copy()
    noisy[:3, 3] += 1e-4
    img.set_sform(noisy, code=1)
    assert _describe(tmp_path, img).usable
    assert header_warnings(img) == []


def test_zero_and_nan_zooms():
    """With a sform, pixdim places nothing (nibabel's img.affine is the sform, as in mri_synthsr):
    processed and warned. Without one, NaN or zero sizes place the image wrongly: refused."""
    img = _img()
    img.header.set_zooms((1.0, 0.0, 3.0))
    assert int(img.header["sform_code"]) > 0 and header_problem(img) == ""
    assert "using the sform's" in header_warnings(img)[0]
    img.header["pixdim"][3] = np.nan
    assert header_problem(img) == "" and "not finite and positive" in header_warnings(img)[0]
    img.header["sform_code"] = 0
    assert "finite and positive" in header_problem(img)
    img.header["pixdim"][3] = 3.0
    assert "finite and positive" in header_problem(img)


def test_no_spatial_transform(tmp_path):
    img = _img()
    img.header["qform_code"] = 0
    img.header["sform_code"] = 0
    # nibabel falls back to a zooms-only affine; mri_synthsr processes it on that grid, so do we (warned)
    assert header_problem(img) == ""
    notes = header_warnings(img)
    assert len(notes) == 1 and "neither qform nor sform is set" in notes[0] and "fallback" in notes[0]


def test_4d_scan_is_refused(tmp_path):
    info = _describe(tmp_path, _img(shape=(4, 4, 4, 3)))
    assert not info.usable and "4D" in info.reason
    assert _describe(tmp_path, _img(shape=(4, 4, 4, 1)), "one.nii.gz").usable


def test_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    info = describe_scan(empty, entities={"subject": "01", "suffix": "T1w"}, relpath="empty")
    assert not info.usable and info.reason == "empty file (0 bytes)"
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(gzip.compress(b"not a nifti" * 10))
    info = describe_scan(junk, entities={"subject": "01", "suffix": "T1w"}, relpath="junk")
    assert not info.usable and info.reason.startswith("unreadable image")
    assert "\n" not in info.reason


def test_header_only_image_is_usable_for_planning(tmp_path):
    img = _img(shape=(64, 64, 20))
    path = tmp_path / "h.nii.gz"
    img.to_filename(path)
    header_bytes = gzip.decompress(path.read_bytes())[:352]
    path.write_bytes(gzip.compress(header_bytes))
    info = describe_scan(path, entities={"subject": "01", "suffix": "T2w"}, relpath="h")
    assert info.usable and info.shape == [64, 64, 20]


def test_entities_are_reduced_to_source_entities(tmp_path):
    path = tmp_path / "a.nii.gz"
    _img().to_filename(path)
    info = describe_scan(
        path,
        entities={"subject": "01", "session": "1", "acquisition": "ax", "suffix": "T1w",
                  "extension": ".nii.gz", "datatype": "anat", "SliceThickness": 3},
        relpath="a",
    )
    assert info.entities == {"subject": "01", "session": "1", "acquisition": "ax"}
    assert info.subject == "01" and info.session == "1"
