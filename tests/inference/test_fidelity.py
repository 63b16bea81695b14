"""Fidelity against the TensorFlow reference fixtures, at the tolerances of their README (section 4).

Each stage is compared where the fixture stores it: network input, raw network outputs (both TTA passes),
the float array handed to the writer, then the written file through the command line, header included.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from synthsr_nipype.cli import hyperfine as hyperfine_cli
from synthsr_nipype.cli import synthsr as synthsr_cli
from synthsr_nipype.inference import (
    combine_passes,
    finish_general,
    finish_hyperfine,
    load_volume,
    predict,
    prepare_general,
    prepare_hyperfine,
)
from synthsr_nipype.model import load_model
from synthsr_nipype.model.spec import pad_multiple
from tests.paths import DEVSET, manifest

CASES = manifest()
FLOAT32_REL = 2.0**-22
RAW_REL_L2 = 1e-5
UINT8_SAME = 99.9  # percent
HYPERFINE_REL_L2 = 1e-4


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def channels_last(t) -> np.ndarray:
    return t.permute(0, 2, 3, 4, 1).cpu().numpy()


def stage_cases():
    return [c for c in CASES if (DEVSET / "expected" / c["name"] / "net_input.npy").exists()]


@pytest.mark.parametrize("case", stage_cases(), ids=lambda c: c["name"])
def test_network_stages(case):
    expected = DEVSET / "expected" / case["name"]
    model = load_model(DEVSET / case["model"])
    assert model.arch["n_levels"] == case["model_arch"]["n_levels"]
    assert model.arch["base_features"] == case["model_arch"]["base_features"]
    assert model.arch["in_channels"] == case["model_arch"]["input_channels"]
    if case["kind"] == "general":
        prepared = prepare_general(load_volume(DEVSET / case["inputs"]["image"]), ct="--ct" in case["flags"],
                                   multiple=pad_multiple(model.spec))
    else:
        prepared = prepare_hyperfine(load_volume(DEVSET / case["inputs"]["t1"]),
                                     load_volume(DEVSET / case["inputs"]["t2"]), multiple=pad_multiple(model.spec))
    net_input = channels_last(prepared.net_input)
    reference_input = np.load(expected / "net_input.npy")
    assert net_input.shape == reference_input.shape
    scale = np.maximum(np.abs(net_input), np.abs(reference_input))
    input_err = float(np.max(np.abs(net_input - reference_input) - FLOAT32_REL * scale))
    assert input_err <= 0, f"network input differs beyond float32 rounding by {input_err}"

    flip = case["tta_flip"]
    first, second = predict(model, prepared.net_input, flip=flip)
    err1 = rel_l2(channels_last(first), np.load(expected / "net_output_pass1.npy"))
    figures = {"pass1_rel_l2": err1}
    assert err1 <= RAW_REL_L2
    if flip:
        err2 = rel_l2(channels_last(second), np.load(expected / "net_output_pass2.npy"))
        figures["pass2_rel_l2"] = err2
        assert err2 <= RAW_REL_L2
    if case["kind"] == "general":
        final = finish_general(combine_passes(first, second), prepared,
                               sharpen="--disable_sharpening" not in case["flags"])
    else:
        final = finish_hyperfine(first, prepared)
    reference_final = np.load(expected / "pred_final.npy")
    assert tuple(final.shape) == reference_final.shape
    figures["pred_final_rel_l2"] = rel_l2(final.numpy(), reference_final)
    print(f"\n{case['name']}: " + ", ".join(f"{k}={v:.3g}" for k, v in figures.items()))


def run_cli(case, out_path) -> int:
    if case["kind"] == "general":
        argv = ["--i", str(DEVSET / case["inputs"]["image"]), "--o", str(out_path),
                "--model", str(DEVSET / case["model"]), *case["flags"]]
        return synthsr_cli.main(argv)
    argv = ["--t1", str(DEVSET / case["inputs"]["t1"]), "--t2", str(DEVSET / case["inputs"]["t2"]),
            "--o", str(out_path), "--model", str(DEVSET / case["model"])]
    return hyperfine_cli.main(argv)


def compare_header(mine: nib.Nifti1Image, expected_header: dict) -> None:
    header = mine.header
    assert list(mine.shape) == expected_header["shape"]
    assert str(mine.get_data_dtype()) == expected_header["dtype"]
    np.testing.assert_allclose(mine.affine, np.array(expected_header["affine"]), atol=1e-5)
    assert int(header["qform_code"]) == expected_header["qform_code"]
    assert int(header["sform_code"]) == expected_header["sform_code"]
    np.testing.assert_allclose(header.get_zooms()[:3], expected_header["zooms"][:3], rtol=1e-6)
    slope, inter = header.get_slope_inter()
    for mine_value, key, default in ((slope, "scl_slope", 1.0), (inter, "scl_inter", 0.0)):
        want = expected_header.get(key)
        got = default if mine_value is None else mine_value
        want = default if want is None else want
        assert got == pytest.approx(want, rel=1e-6), key


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_command_line_output(case, tmp_path):
    out = tmp_path / "out.nii.gz"
    assert run_cli(case, out) == 0
    mine, reference = nib.load(out), nib.load(DEVSET / "expected" / case["name"] / "output.nii.gz")
    compare_header(mine, json.loads((DEVSET / "expected" / case["name"] / "header.json").read_text()))
    assert mine.shape == reference.shape
    if case["kind"] == "general":
        a = np.asanyarray(mine.dataobj).astype(np.int16)
        b = np.asanyarray(reference.dataobj).astype(np.int16)
        same = 100.0 * float(np.mean(a == b))
        worst = int(np.abs(a - b).max())
        print(f"\n{case['name']}: uint8 identical {same:.5f} %, max difference {worst} level(s)")
        assert same >= UINT8_SAME
        assert worst <= 1
    else:
        err = rel_l2(mine.get_fdata(), reference.get_fdata())
        print(f"\n{case['name']}: hyperfine output relative L2 {err:.3g}")
        assert err <= HYPERFINE_REL_L2
