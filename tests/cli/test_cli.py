"""Command-line behaviour shared with mri_synthsr: inputs as file/folder/list, naming, exit codes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from synthsr_nipype import __version__
from synthsr_nipype.cli import hyperfine as hyperfine_cli
from synthsr_nipype.cli import synthsr as synthsr_cli
from synthsr_nipype.inference import run
from tests.paths import DEVSET, MODELS, TINY

CROP = DEVSET / "inputs" / "flair_crop.nii.gz"
LPS = DEVSET / "inputs" / "orient_lps.nii.gz"


def test_python_api_equals_command_line(tmp_path):
    out = tmp_path / "o.nii.gz"
    assert synthsr_cli.main(["--i", str(CROP), "--o", str(out), "--model", str(TINY)]) == 0
    api = run(nib.load(CROP), model=str(TINY))
    assert np.array_equal(np.asanyarray(nib.load(out).dataobj), np.asanyarray(api.dataobj))
    # nibabel keeps the input header when the 1 mm affine is allclose to it, as the reference does
    np.testing.assert_allclose(nib.load(out).affine, api.affine, atol=1e-5)


def test_precision_reaches_the_network(tmp_path):
    outputs = {}
    for precision in ("fp32", "tf32", "bf16"):
        out = tmp_path / f"{precision}.nii.gz"
        assert synthsr_cli.main(["--i", str(CROP), "--o", str(out), "--model", str(TINY), "--cpu",
                                 "--precision", precision]) == 0
        outputs[precision] = np.asanyarray(nib.load(out).dataobj).astype(np.int16)
    assert np.array_equal(outputs["tf32"], outputs["fp32"])  # TF32 is a CUDA mode: fp32 elsewhere
    changed = np.abs(outputs["bf16"] - outputs["fp32"])
    print(f"bf16 vs fp32 (tiny model, CPU): {100 * np.mean(changed > 0):.1f} % of voxels differ, "
          f"max {changed.max()} levels")
    assert changed.max() > 0


def test_folder_input_uses_mri_synthsr_names(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CROP, src / "a.nii.gz")
    shutil.copy(LPS, src / "b.nii")  # uncompressed NIfTI keeps its extension
    nib.save(nib.load(LPS), src / "b.nii")
    (src / "notes.txt").write_text("ignored")
    assert synthsr_cli.main(["--i", str(src), "--o", str(tmp_path / "out"), "--model", str(TINY)]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_synthsr.nii.gz", "b_synthsr.nii"]


def test_text_list_input(tmp_path):
    outs = [tmp_path / "x1.nii.gz", tmp_path / "deep" / "x2.nii.gz"]
    (tmp_path / "in.txt").write_text(f"{CROP}\n\n{LPS}\n")
    (tmp_path / "out.txt").write_text("\n".join(map(str, outs)) + "\n")
    assert synthsr_cli.main(["--i", str(tmp_path / "in.txt"), "--o", str(tmp_path / "out.txt"),
                             "--model", str(TINY)]) == 0
    assert all(p.is_file() for p in outs)


def test_file_into_folder(tmp_path):
    assert synthsr_cli.main(["--i", str(CROP), "--o", str(tmp_path / "folder"), "--model", str(TINY)]) == 0
    assert (tmp_path / "folder" / "flair_crop_synthsr.nii.gz").is_file()


@pytest.mark.parametrize("argv,words", [
    (["--i", "nope.nii.gz", "--o", "o.nii.gz"], "does not exist"),
    (["--i", "list.txt", "--o", "o.nii.gz"], "--o must be a .txt"),
    (["--i", "in.nii.gz", "--o", "o.txt"], ".txt list when --i is one"),
])
def test_usage_errors_exit_2(tmp_path, capsys, argv, words, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.txt").write_text(str(CROP))
    shutil.copy(CROP, tmp_path / "in.nii.gz")
    assert synthsr_cli.main(argv + ["--model", str(TINY)]) == 2
    assert words in capsys.readouterr().err


def test_skip_existing_keeps_the_file(tmp_path):
    out = tmp_path / "o.nii.gz"
    out.write_bytes(b"keep me")
    assert synthsr_cli.main(["--i", str(CROP), "--o", str(out), "--model", str(TINY), "--skip-existing"]) == 0
    assert out.read_bytes() == b"keep me"


def test_hyperfine_model_needs_its_own_command(tmp_path, capsys):
    code = synthsr_cli.main(["--i", str(CROP), "--o", str(tmp_path / "o.nii.gz"),
                             "--model", str(MODELS / "hyperfine_tiny_weights.h5")])
    assert code == 3
    assert "synthsr-hyperfine" in capsys.readouterr().err


def test_hyperfine_command(tmp_path, capsys):
    out = tmp_path / "hf.nii.gz"
    weights = MODELS / "hyperfine_tiny_weights.h5"
    code = hyperfine_cli.main(["--t1", str(DEVSET / "inputs" / "hf_t1.nii.gz"), "--t2",
                               str(DEVSET / "inputs" / "hf_t2.nii.gz"), "--o", str(out), "--model", str(weights)])
    assert code == 0 and out.is_file()
    # what ran, as synthsr says it: the version, the model and its SHA-256, the device
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    err = capsys.readouterr().err
    assert f"synthsr-hyperfine {__version__}: model " in err and f"(sha256 {sha256[:12]}), device cpu" in err


def test_hyperfine_takes_synthsrs_output_options(tmp_path, capsys):
    """One batch for both image commands: the pair's reliability map (coverage of both scans; the Hyperfine
    model has no test-time flip), its T1-grid copy, and outputs left alone on a rerun."""
    import json

    t1, t2 = DEVSET / "inputs" / "hf_t1.nii.gz", DEVSET / "inputs" / "hf_t2.nii.gz"
    out, rel, plain = tmp_path / "hf.nii.gz", tmp_path / "hf_rel.nii.gz", tmp_path / "plain.nii.gz"
    pair = ["--t1", str(t1), "--t2", str(t2), "--model", str(MODELS / "hyperfine_tiny_weights.h5")]
    argv = [*pair, "--o", str(out)]
    assert hyperfine_cli.main([*argv, "--reliability", str(rel), "--output-space", "native"]) == 0
    assert hyperfine_cli.main([*pair, "--o", str(plain)]) == 0
    image, native, source = nib.load(out), nib.load(tmp_path / "hf_native.nii.gz"), nib.load(t1)
    assert np.array_equal(np.asanyarray(image.dataobj), np.asanyarray(nib.load(plain).dataobj))  # one pipeline
    assert native.shape == source.shape and np.allclose(native.affine, source.affine, atol=1e-5)
    meta = json.loads((tmp_path / "hf_rel.json").read_text())
    assert meta["Source"] == "hf_t1.nii.gz + hf_t2.nii.gz" and meta["QC"]["TTADisagreement"] is None
    data = nib.load(rel).get_fdata()
    assert data.shape == image.shape and data.min() >= 0 and data.max() <= 1 and data.mean() > 0
    before = out.stat().st_mtime_ns
    capsys.readouterr()
    assert hyperfine_cli.main([*argv, "--skip-existing"]) == 0
    assert out.stat().st_mtime_ns == before and "exists, skipped" in capsys.readouterr().err


def test_installed_entry_point_contract(tmp_path):
    """The hidden-set contract: the installed command, its exit code and its output file."""
    exe = shutil.which("synthsr") or pytest.fail("the synthsr command is not installed")
    out = tmp_path / "OUT.nii.gz"
    result = subprocess.run([exe, "--i", str(CROP), "--o", str(out), "--model", str(TINY), "--disable_flipping"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert nib.load(out).get_data_dtype() == np.uint8
    bad = subprocess.run([exe, "--i", str(tmp_path / "missing.nii.gz"), "--o", str(out), "--model", str(TINY)],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert subprocess.run([sys.executable, "-m", "synthsr_nipype.cli.synthsr", "--version"],
                          capture_output=True, text=True).returncode == 0


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_outputs_are_group_readable_under_umask_022(tmp_path, umask_022):
    """On a shared cluster the group reads the outputs: the mode is the umask's, not mkstemp's 0600."""
    out = tmp_path / "o.nii.gz"
    assert synthsr_cli.main(["--i", str(CROP), "--o", str(out), "--model", str(TINY)]) == 0
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["o.nii.gz"]  # no temporary file left


OBLIQUE = DEVSET / "inputs" / "oblique_0.9x0.9x5.nii.gz"


def test_reliability_and_native_space(tmp_path):
    """``--reliability OUT`` and ``--output-space native`` (issue 25), from one run of the network."""
    import json

    out, rel = tmp_path / "o.nii.gz", tmp_path / "maps" / "o_rel.nii.gz"
    assert synthsr_cli.main(["--i", str(OBLIQUE), "--o", str(out), "--model", str(TINY), "--reliability", str(rel),
                             "--output-space", "native"]) == 0
    image, native, source = nib.load(out), nib.load(tmp_path / "o_native.nii.gz"), nib.load(OBLIQUE)
    assert np.array_equal(np.asanyarray(image.dataobj), np.asanyarray(run(OBLIQUE, model=str(TINY)).dataobj))
    assert native.shape == source.shape and np.allclose(native.affine, source.affine, atol=1e-5)
    reliability = nib.load(rel)
    data = reliability.get_fdata()
    assert reliability.shape == image.shape and np.allclose(reliability.affine, image.affine, atol=1e-5)
    assert data.min() >= 0 and data.max() <= 1 and 0 < data.mean() < 1
    meta = json.loads((tmp_path / "maps" / "o_rel.json").read_text())
    assert set(meta["QC"]) == {"MeanReliability", "UncoveredFraction", "TTADisagreement"}
    assert "coverage" in meta["Formula"] and meta["Source"] == OBLIQUE.name


def test_reliability_folder_for_several_inputs(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CROP, src / "a.nii.gz")
    shutil.copy(OBLIQUE, src / "b.nii.gz")
    assert synthsr_cli.main(["--i", str(src), "--o", str(tmp_path / "out"), "--model", str(TINY),
                             "--reliability", str(tmp_path / "rel.nii.gz")]) == 2
    assert "--reliability" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert synthsr_cli.main(["--i", str(src), "--o", str(tmp_path / "out"), "--model", str(TINY),
                             "--reliability", str(tmp_path / "rel")]) == 0
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == [
        "a_synthsr_reliability.json", "a_synthsr_reliability.nii.gz",
        "b_synthsr_reliability.json", "b_synthsr_reliability.nii.gz"]
