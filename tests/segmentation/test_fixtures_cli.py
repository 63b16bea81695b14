"""Every dev case through the ``synthseg`` command-line contract of the fixture README, section 5.

Each case runs exactly as its manifest ``command`` (``{IN}`` = the input under its own file name, ``{OUT}`` =
an output folder) with ``FREESURFER_HOME`` pointing at the set's ``fshome``; outputs are compared at the
README's tolerances, ``expected_absent`` files must not exist, ``expect_fail`` cases must exit non-zero and
write no segmentation.
"""

from __future__ import annotations

import shutil

import pytest

from synthsr_nipype.cli import synthseg

from .checker import FSHOME, SET, cases, check_case

pytestmark = pytest.mark.skipif(not SET.is_dir(), reason="../shared/fixtures/synthseg-reference not present")


@pytest.mark.parametrize("case", cases(), ids=lambda c: c["name"])
def test_case_through_the_command_line(case, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FREESURFER_HOME", str(FSHOME))
    monkeypatch.delenv("SYNTHSR_MODELS_DIR", raising=False)
    src = tmp_path / "in" / (SET / case["input"]).name
    src.parent.mkdir()
    shutil.copyfile(SET / case["input"], src)
    out = tmp_path / "out"
    argv = [a.replace("{IN}", str(src)).replace("{OUT}", str(out)) for a in case["command"]]
    rc = synthseg.main(argv)
    err = capsys.readouterr().err
    if case["expect_fail"]:
        assert rc != 0
        assert not (out / "seg.nii.gz").exists()
        assert "Traceback" not in err and f"{src}: input should have 3 dimensions" in err
    else:
        assert rc == 0, err
    problems, figures = check_case(case, out)
    print(case["name"], {k: round(v, 6) for k, v in figures.items()})
    assert not problems, problems
