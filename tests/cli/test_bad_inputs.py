"""Every kind of bad input: one clear line naming the file, a documented exit code, nothing written."""

from __future__ import annotations

import hashlib
import shutil

import nibabel as nib
import numpy as np
import pytest

from synthsr_nipype.cli import synthsr as synthsr_cli
from tests.model.keras_writer import copy_layers, write_weights_only
from tests.paths import DEVSET, TINY

GOOD = DEVSET / "inputs" / "flair_crop.nii.gz"


def _save(tmp_path, name, data, affine=None, sform_only=False):
    if sform_only:
        # nibabel cannot build a qform from a degenerate affine, so write the raw sform rows ourselves
        header = nib.Nifti1Header()
        header.set_data_shape(data.shape)
        header.set_data_dtype(data.dtype)
        header["srow_x"], header["srow_y"], header["srow_z"] = affine[:3]
        header["sform_code"], header["qform_code"] = 1, 0
        img = nib.Nifti1Image(data, None, header)
    else:
        img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    path = tmp_path / name
    nib.save(img, path)
    return path


def _volume(shape=(20, 22, 18)):
    return np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)


def _run(capsys, argv):
    code = synthsr_cli.main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert "Traceback" not in err
    return code, errors


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bad_image(kind, tmp_path):
    if kind == "truncated":
        path = tmp_path / "truncated.nii.gz"
        data = GOOD.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "truncated"
    if kind == "not_an_image":
        path = tmp_path / "notes.nii.gz"
        path.write_text("this is not a NIfTI file\n")
        return path, "unreadable image"
    if kind == "two_d":
        return _save(tmp_path, "slice.nii.gz", _volume((30, 40))), "2-D"
    if kind == "four_d_frames":
        return _save(tmp_path, "bold.nii.gz", _volume((12, 12, 10, 20))), "20 frames"
    if kind == "nan":
        data = _volume()
        data[3, 4, 5] = np.nan
        data[1, 1, 1] = np.inf
        return _save(tmp_path, "nan.nii.gz", data), "NaN or infinite"
    if kind == "constant":
        return _save(tmp_path, "constant.nii.gz", np.full((20, 20, 20), 7, np.int16)), "constant"
    if kind == "zero_voxel_size":
        affine = np.diag([1.0, 0.0, 1.0, 1.0])
        return _save(tmp_path, "zero.nii.gz", _volume(), affine, sform_only=True), "zero voxel size"
    if kind == "nonfinite_voxel_size":
        affine = np.diag([1.0, np.inf, 1.0, 1.0])
        return _save(tmp_path, "inf.nii.gz", _volume(), affine, sform_only=True), "NaN or infinite"
    if kind == "singular_affine":
        affine = np.array([[1.0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
        return _save(tmp_path, "singular.nii.gz", _volume(), affine, sform_only=True), "singular affine"
    raise AssertionError(kind)


KINDS = ["truncated", "not_an_image", "two_d", "four_d_frames", "nan", "constant", "zero_voxel_size",
         "nonfinite_voxel_size", "singular_affine"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_image_is_refused_cleanly(kind, tmp_path, capsys):
    path, words = bad_image(kind, tmp_path)
    before = _digest(path)
    out = tmp_path / "out" / "result.nii.gz"
    code, errors = _run(capsys, ["--i", str(path), "--o", str(out), "--model", str(TINY)])
    assert code == 1
    assert any(str(path) in line and words in line for line in errors), errors
    assert not out.exists()
    assert not any(p.name.startswith(".result") for p in out.parent.glob("*")) if out.parent.exists() else True
    assert _digest(path) == before


def test_one_bad_image_does_not_stop_the_others(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(GOOD, folder / "a_good.nii.gz")
    bad, _ = bad_image("nan", folder)
    code, errors = _run(capsys, ["--i", str(folder), "--o", str(tmp_path / "out"), "--model", str(TINY)])
    assert code == 1
    assert (tmp_path / "out" / "a_good_synthsr.nii.gz").is_file()
    assert not (tmp_path / "out" / "nan_synthsr.nii.gz").exists()
    assert any(str(bad) in line for line in errors)


def _broken_model(kind, tmp_path):
    if kind == "corrupted_h5":
        path = tmp_path / "corrupt.h5"
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 20)
        return path, "not a readable HDF5"
    if kind == "truncated_h5":
        path = tmp_path / "truncated.h5"
        path.write_bytes(TINY.read_bytes()[:200_000])
        return path, str(path)
    layers = copy_layers(TINY)
    if kind == "missing_layer":
        del layers["unet_conv_uparm_6_1"]
        return write_weights_only(tmp_path / "missing.h5", layers), "missing layers: unet_conv_uparm_6_1"
    if kind == "misshaped_layer":
        layers["unet_conv_downarm_1_1"]["kernel"] = np.zeros((3, 3, 3, 4, 5), np.float32)
        return write_weights_only(tmp_path / "misshaped.h5", layers), "mis-shaped"
    if kind == "unexpected_layer":
        layers["unet_conv_downarm_0_7"] = {"kernel": np.zeros((3, 3, 3, 2, 2), np.float32)}
        return write_weights_only(tmp_path / "unexpected.h5", layers), "unexpected layers: unet_conv_downarm_0_7"
    if kind == "not_a_unet":
        return write_weights_only(tmp_path / "dense.h5", {"dense": {"kernel": np.ones((4, 4), np.float32)}}), \
            "not a SynthSR U-Net"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["corrupted_h5", "truncated_h5", "missing_layer", "misshaped_layer",
                                  "unexpected_layer", "not_a_unet"])
def test_bad_model_is_refused_cleanly(kind, tmp_path, capsys):
    model, words = _broken_model(kind, tmp_path)
    out = tmp_path / "out.nii.gz"
    code, errors = _run(capsys, ["--i", str(GOOD), "--o", str(out), "--model", str(model)])
    assert code == 3
    assert len(errors) == 1 and words in errors[0], errors
    assert not out.exists()


def test_missing_model_says_where_it_looked_and_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SYNTHSR_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FREESURFER_HOME", str(tmp_path / "fs"))
    code, errors = _run(capsys, ["--i", str(GOOD), "--o", str(tmp_path / "o.nii.gz")])
    assert code == 2
    assert len(errors) == 1
    line = errors[0]
    assert "synthsr_v20_230130.h5" in line and str(tmp_path / "models") in line and str(tmp_path / "fs") in line
    assert "synthsr-models fetch v2" in line
