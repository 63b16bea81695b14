"""``synthseg``'s refusals: one line naming the problem, the documented exit code, nothing written."""

from __future__ import annotations

import shutil

import pytest

from synthsr_nipype.cli import synthseg

from .checker import FSHOME, SET

pytestmark = pytest.mark.skipif(not SET.is_dir(), reason="../shared/fixtures/synthseg-reference not present")
IMAGE = SET / "devset" / "inputs" / "flair_crop.nii.gz"


def _run(argv, capsys):
    rc = synthseg.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


@pytest.mark.parametrize(("extra", "exit_code", "message"), [
    (["--robust", "--v1"], 2, "--v1 cannot be used with --robust"),
    (["--crop", "96", "--autocrop"], 2, "--autocrop cannot be used with --crop"),
    (["--crop", "96", "96"], 2, "--crop takes 1 or 3 positive sizes"),
    (["--threads", "-1"], 2, "--threads must be >= 0"),
])
def test_refused_flag_combinations(extra, exit_code, message, tmp_path, capsys):
    rc, err = _run(["--i", IMAGE, "--o", tmp_path / "seg.nii.gz", "--models-dir", FSHOME / "models", *extra], capsys)
    assert rc == exit_code and f"ERROR: {message}" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_input_and_missing_models(tmp_path, capsys):
    rc, err = _run(["--i", tmp_path / "nope.nii.gz", "--o", tmp_path / "seg.nii.gz"], capsys)
    assert rc == 2 and f"{tmp_path / 'nope.nii.gz'}: file does not exist" in err
    rc, err = _run(["--i", IMAGE, "--o", tmp_path / "seg.nii.gz", "--models-dir", tmp_path], capsys)
    assert rc == 2 and "synthseg_2.0.h5: SynthSeg model file not found" in err
    assert list(tmp_path.iterdir()) == []


def test_corrupted_and_wrong_weight_files(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "synthseg_2.0.h5").write_bytes(b"not an HDF5 file")
    rc, err = _run(["--i", IMAGE, "--o", tmp_path / "seg.nii.gz", "--models-dir", models], capsys)
    assert rc == 3 and "not a readable HDF5 weight file" in err
    # the parcellation U-Net (3 input channels, 69 labels) under the segmentation model's name
    shutil.copyfile(FSHOME / "models" / "synthseg_parc_2.0.h5", models / "synthseg_2.0.h5")
    rc, err = _run(["--i", IMAGE, "--o", tmp_path / "seg.nii.gz", "--models-dir", models], capsys)
    assert rc == 3 and "no 'unet' U-Net in this file" in err
    assert not (tmp_path / "seg.nii.gz").exists()


def test_device_flag_as_the_other_image_commands(tmp_path, capsys):
    """``--device`` (and ``--cpu``, which wins) as ``synthsr`` takes them; the run's line says where it ran."""
    out = tmp_path / "seg.nii.gz"
    rc, err = _run(["--i", IMAGE, "--o", out, "--models-dir", FSHOME / "models", "--fast", "--device", "cuda",
                    "--cpu", "--threads", "2"], capsys)
    assert rc == 0 and out.is_file() and "device cpu, 2 thread(s)" in err
