"""The plan on the six bids-examples layouts, compared with what pybids reports.

Their images are 0-byte placeholders: every scan must be skipped with its reason, and
``--dry-run`` must still print the plan and exit 0 without creating the output folder.
A mirror with header-only images (same names and sidecars) checks the runnable plan.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids import BIDSLayout

from synthsr_nipype.bids import DEFAULT_SUFFIXES, build_layout, build_plan, collect_anat
from synthsr_nipype.bids.grouping import SUFFIX_PRIORITY
from tests.paths import EXAMPLES

LAYOUTS = ["ds001", "ds114", "ds004332", "genetics_ukbb", "eyetracking_fmri", "qmri_mp2rage"]

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared not available")


def pybids_expectation(root: Path, suffixes=DEFAULT_SUFFIXES) -> dict[tuple, set[str]]:
    """(subject, session) -> anatomical image names, straight from pybids."""
    layout = BIDSLayout(str(root), validate=True)
    expected: dict[tuple, set[str]] = {}
    for f in layout.get(datatype="anat", suffix=list(suffixes), extension=[".nii", ".nii.gz"]):
        ents = f.get_entities()
        expected.setdefault((ents["subject"], ents.get("session")), set()).add(Path(f.path).name)
    return expected


def plan_for(root: Path, suffixes=DEFAULT_SUFFIXES):
    layout = build_layout(root)
    return build_plan(collect_anat(layout, suffixes=suffixes), bids_dir=root)


def header_only_mirror(src: Path, dest: Path) -> Path:
    """Copy a dataset, replacing each image by a header-only NIfTI with varied voxel sizes."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.nii", "*.nii.gz"))
    for img_path in list(src.rglob("*.nii")) + list(src.rglob("*.nii.gz")):
        rel = img_path.relative_to(src)
        # Voxel sizes derived from the name: ties and non-ties both occur, reproducibly.
        digest = hashlib.sha256(rel.name.encode()).digest()
        zooms = (1.0, 1.0, float(1 + digest[0] % 4))
        img = nib.Nifti1Image(np.zeros((1, 1, 1), np.int16), np.diag([*zooms, 1.0]))
        img.header.set_data_shape((64, 64, 40))
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=1)
        block = img.header.binaryblock + b"\x00" * 4
        out = dest / rel
        out.write_bytes(gzip.compress(block, mtime=0) if out.name.endswith(".gz") else block)
    return dest


@pytest.mark.parametrize("name", LAYOUTS)
def test_plan_matches_pybids_on_placeholders(name):
    root = EXAMPLES / name
    expected = pybids_expectation(root)
    plan = plan_for(root)
    got = {(g.subject, g.session): {Path(p).name for p, _ in g.skipped} for g in plan.groups}
    assert got == expected
    assert all(reason == "empty file (0 bytes)" for g in plan.groups for _, reason in g.skipped)
    assert plan.jobs == []  # nothing can run on placeholders


@pytest.mark.parametrize("name", LAYOUTS)
def test_plan_matches_pybids_on_header_only_images(name, tmp_path):
    root = header_only_mirror(EXAMPLES / name, tmp_path / name)
    expected = pybids_expectation(root)
    plan = plan_for(root)
    assert {(g.subject, g.session) for g in plan.groups} == set(expected)
    for group in plan.groups:
        names = {Path(s).name for j in group.jobs for s in j.sources}
        assert names == expected[(group.subject, group.session)]
        assert group.skipped == []
        # Reference rule, recomputed from the headers.
        def key(n, g=group):
            sub = f"sub-{g.subject}" + (f"/ses-{g.session}" if g.session else "")
            zooms = nib.load(root / sub / "anat" / n).header.get_zooms()[:3]
            suffix = n.split("_")[-1].split(".")[0]
            rank = SUFFIX_PRIORITY.index(suffix) if suffix in SUFFIX_PRIORITY else 3
            return (round(float(np.prod(zooms)), 4), rank, n)
        assert Path(group.reference).name == min(names, key=key)
        outs = [j.out_relpath for j in group.jobs]
        assert len(set(outs)) == len(outs)
        assert group.fused_relpath.endswith("_desc-synthsr_T1w.nii.gz")


def test_qmri_other_suffixes(tmp_path):
    """MP2RAGE inversions (inv-, part- entities) get distinct, entity-preserving names."""
    root = header_only_mirror(EXAMPLES / "qmri_mp2rage", tmp_path / "q")
    plan = plan_for(root, suffixes=["MP2RAGE", "UNIT1"])
    outs = sorted(j.out_relpath for j in plan.jobs)
    assert outs == [
        "sub-1/anat/sub-1_desc-synthsrUNIT1_T1w.nii.gz",
        "sub-1/anat/sub-1_inv-1_part-mag_desc-synthsrMP2RAGE_T1w.nii.gz",
        "sub-1/anat/sub-1_inv-1_part-phase_desc-synthsrMP2RAGE_T1w.nii.gz",
        "sub-1/anat/sub-1_inv-2_part-mag_desc-synthsrMP2RAGE_T1w.nii.gz",
        "sub-1/anat/sub-1_inv-2_part-phase_desc-synthsrMP2RAGE_T1w.nii.gz",
    ]
    # derivatives/ is not raw data: pymp2rage's UNIT1 is not picked up.
    assert all("derivatives" not in s for j in plan.jobs for s in j.sources)


@pytest.mark.parametrize("name", LAYOUTS)
def test_dry_run_exits_0_without_touching_output(name, tmp_path, capsys):
    from synthsr_nipype.cli.bids_app import main

    out = tmp_path / "out"
    code = main([str(EXAMPLES / name), str(out), "participant", "--dry-run",
                 "-w", str(tmp_path / "work")])
    text = capsys.readouterr().out
    assert code == 0
    assert not out.exists() and not (tmp_path / "work").exists()
    assert text.startswith(f"SynthSR BIDS-App plan for {EXAMPLES / name}")
    n_groups = len(pybids_expectation(EXAMPLES / name))
    assert f"{n_groups} group(s)" in text
    if n_groups == 0:
        assert "nothing would run: no usable anatomical scan" in text
    else:
        assert "empty file (0 bytes)" in text


def test_dry_run_with_selection(tmp_path, capsys):
    from synthsr_nipype.cli.bids_app import main

    code = main([str(EXAMPLES / "ds114"), str(tmp_path / "o"), "participant", "--dry-run",
                 "--participant-label", "sub-03", "04", "--session-label", "ses-test"])
    text = capsys.readouterr().out
    assert code == 0
    assert "2 group(s)" in text and "sub-03_ses-test:" in text and "sub-04_ses-test:" in text
    assert "retest" not in text
