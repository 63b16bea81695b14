"""Every dev case of the SynthSeg TF-reference fixtures through the Python API, at the README's tolerances."""

from __future__ import annotations

import shutil

import pytest

from synthsr_nipype.errors import InputImageError
from synthsr_nipype.segmentation import run, write_outputs

from .checker import DEVSET, FSHOME, SET, cases, check_case

pytestmark = pytest.mark.skipif(not SET.is_dir(), reason="../shared/fixtures/synthseg-reference not present")
MODELS = FSHOME / "models"


def _flags(case: dict) -> dict:
    flags = case["flags"]
    crop = None
    if "--crop" in flags:
        i = flags.index("--crop") + 1
        crop = []
        while i < len(flags) and not flags[i].startswith("--"):
            crop.append(int(flags[i]))
            i += 1
    return {"robust": "--robust" in flags, "fast": "--fast" in flags, "parc": "--parc" in flags,
            "v1": "--v1" in flags, "ct": "--ct" in flags, "autocrop": "--autocrop" in flags, "crop": crop}


def _outputs(case: dict, out) -> dict:
    command = case["command"]
    wanted = {}
    for flag, key in (("--vol", "volumes"), ("--qc", "qc"), ("--post", "posteriors"), ("--resample", "resampled")):
        if flag in command:
            wanted[key] = out / command[command.index(flag) + 1].replace("{OUT}/", "")
    return wanted


# Every case runs through the command line (test_fixtures_cli.py), which calls this API; here the API itself,
# on the cases that cover its distinct paths (flip TTA + topology, robust + parcellation + QC, --crop paste,
# --autocrop, a refused image), to keep the suite's time reasonable.
API_CASES = ("flair_default", "ms_t1_robust_parc_qc", "flair_crop_flag", "flair_autocrop", "ms_t2_8slices_error")


@pytest.mark.parametrize("case", [c for c in cases() if c["name"] in API_CASES], ids=lambda c: c["name"])
def test_case_through_the_api(case, tmp_path):
    src = tmp_path / "in" / DEVSET.joinpath(case["input"].removeprefix("devset/")).name
    src.parent.mkdir()
    shutil.copyfile(SET / case["input"], src)  # the CSV's subject column is the input's name
    out = tmp_path / "out"
    wanted = _outputs(case, out)
    kwargs = _flags(case)
    if case["expect_fail"]:
        with pytest.raises(InputImageError, match="3 dimensions"):
            run(src, qc="qc" in wanted, posteriors="posteriors" in wanted, models_dir=MODELS, **kwargs)
        return
    result = run(src, qc="qc" in wanted, posteriors="posteriors" in wanted, threads=2, models_dir=MODELS, **kwargs)
    assert result.subject == src.name.replace(".nii.gz", "")
    assert (result.qc is not None) == ("qc" in wanted)
    write_outputs(result, out / "seg.nii.gz", **wanted)
    problems, figures = check_case(case, out)
    print(case["name"], {k: round(v, 6) for k, v in figures.items()})
    assert not problems, problems
