"""The corpus (tests/corpus/build.py) through ``synthsr-bids`` and ``synthsr``, as a user runs them.

One ``synthsr-bids`` run takes the whole dataset (good subjects beside every broken scan) and one
``synthsr`` run takes every image as a list: each broken scan must get exactly one console line
naming it and its problem, no traceback, every good scan must be processed, nothing partial may
sit in the output folder and the inputs must come out unchanged.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthsr_nipype.atomic import host_label
from tests.paths import TINY
from tests.validator import AVAILABLE as VALIDATOR_AVAILABLE
from tests.validator import bids_validator_errors

from .build import BIDS, DATA, GOOD, HEADER, ODD, build_corpus, snapshot

pytestmark = pytest.mark.skipif(not TINY.is_file(), reason="tiny fixture model (../shared) not available")

#: synthsr-bids: some selected scans were not processed (docs/bids-app.md, exit codes).
EXIT_SCANS_NOT_PROCESSED = 1
#: synthsr: at least one image failed, the others were processed (docs/cli.md).
EXIT_IMAGE_FAILED = 1


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=900, check=False)


def _print_counts(command: str, cases, outcome: dict[str, str]) -> None:
    counts = collections.Counter((case.klass, outcome[case.name]) for case in cases)
    print(f"\n{command}: {len(cases)} cases")
    for (klass, result), n in sorted(counts.items()):
        print(f"  {klass:7s} {result:10s} {n}")


def _assert_nothing_partial(out: Path) -> None:
    """No hidden or temporary file anywhere in the output folder; every image and JSON is whole."""
    for path in out.rglob("*"):
        rel = path.relative_to(out).as_posix()
        assert not any(part.startswith(".") for part in Path(rel).parts) or rel == ".bidsignore", rel
        assert not path.name.endswith((".tmp", ".part")) and ".part." not in path.name, rel
        if path.name.endswith((".nii.gz", ".nii")):
            assert np.isfinite(np.asarray(nib.load(path).dataobj, dtype=np.float32)).all(), rel
        elif path.suffix == ".json":
            json.loads(path.read_text())


def _lines_naming(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if f"{name}: " in line]


def _check_warned(case, warnings: list[str], name: str, source: Path, output: Path) -> None:
    """A warned case: one WARNING line naming it; the output lies where nibabel's img.affine (the
    sform when set, mri_synthsr's choice) puts the input, not where its qform does."""
    naming = _lines_naming(warnings, name)
    assert len(naming) == 1 and case.warning in naming[0], (case.name, naming)
    src, out = nib.load(source), nib.load(output)

    def centre(affine, shape):
        return affine[:3, :3] @ ((np.asarray(shape[:3]) - 1) / 2) + affine[:3, 3]

    at = centre(out.affine, out.shape)
    off_best = float(np.linalg.norm(at - centre(src.affine, src.shape)))
    line = f"{case.name}: output centre {off_best:.2f} mm from the input's img.affine centre"
    assert off_best < 1.5, line
    if "disagree" in case.warning:  # the qform points elsewhere: the output is not there
        off_q = float(np.linalg.norm(at - centre(src.header.get_qform(), src.shape)))
        line += f", {off_q:.1f} mm from its qform's"
        assert off_q > 30, line
    print(line)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` bind-mounted read-only over itself, as a read-only input mount (root only; where
    that is impossible the run goes on writable and the snapshot alone shows the inputs unchanged)."""
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "--bind", str(folder), str(folder)], capture_output=True, check=False).returncode == 0
    if mounted and subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True,
                                  check=False).returncode:
        subprocess.run(["umount", str(folder)], check=False)
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def test_synthsr_bids_on_the_corpus(tmp_path):
    # a non-ASCII path with a space, mounted read-only where possible
    bids, cases = build_corpus(tmp_path / "données ü")
    before = snapshot(bids)
    out, work = tmp_path / "out", tmp_path / "work"
    with _read_only(bids) as read_only:
        print(f"\ninput dataset mounted read-only: {read_only}")
        proc = _run("synthsr_nipype.cli.bids_app", str(bids), str(out), "participant", "--model", str(TINY),
                    "-w", str(work), "--nprocs", "1", cwd=tmp_path)
    console = proc.stdout + proc.stderr
    assert "Traceback" not in console, console[-3000:]
    assert proc.returncode == EXIT_SCANS_NOT_PROCESSED, console[-3000:]
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("WARNING:")]
    warned = [line for line in proc.stderr.splitlines() if line.startswith("WARNING:")]

    outcome: dict[str, str] = {}
    for case in (c for c in cases if c.bids is not None):
        naming = _lines_naming(errors, case.relpath)
        if case.bids:
            assert len(naming) == 1, (case.name, naming)
            assert case.bids in naming[0], (case.name, naming[0])
            outcome[case.name] = "refused"
        else:
            assert not naming, (case.name, naming)
            outcome[case.name] = "processed"
        if case.warning:
            anat = out / f"sub-{case.subject}" / "anat"
            (output,) = [p for p in anat.glob("*_T1w.nii.gz") if "_desc-synthsr_" not in p.name]
            _check_warned(case, warned, case.relpath, bids / case.relpath, output)
            sidecar = json.loads(output.with_name(output.name.replace(".nii.gz", ".json")).read_text())
            assert any(case.warning in note for note in sidecar["HeaderWarnings"]), sidecar
            outcome[case.name] = "processed with a warning"
        else:
            assert not _lines_naming(warned, case.relpath), case.name
    applicable = [c for c in cases if c.bids is not None]
    not_processed = sum(1 for c in applicable if c.bids)
    assert f"ERROR: {not_processed} selected scan(s) not processed" in proc.stderr

    # Every subject with a scan to process has its fused image and one SynthSR output per scan.
    processed = collections.Counter(c.subject for c in applicable if not c.bids)
    for subject, n_scans in processed.items():
        anat = out / f"sub-{subject}" / "anat"
        assert (anat / f"sub-{subject}_desc-synthsr_T1w.nii.gz").is_file(), subject
        per_scan = [p for p in anat.glob("*_T1w.nii.gz") if "_desc-synthsr_" not in p.name]
        assert len(per_scan) == n_scans, (subject, sorted(p.name for p in per_scan))
    # subjects with images written (every subject also has its report, sub-X.html and its figures)
    written = {p.relative_to(out).parts[0][4:] for p in out.glob("sub-*/**/*.nii.gz")}
    assert written == set(processed), sorted(written ^ set(processed))
    _assert_nothing_partial(out)
    assert snapshot(bids) == before
    if VALIDATOR_AVAILABLE:
        assert bids_validator_errors(out) == []
    else:
        print("bids-validator-deno not installed: the output was not validated")
    assert {HEADER, DATA, BIDS, ODD, GOOD} <= {c.klass for c in applicable}
    _print_counts("synthsr-bids", applicable, outcome)


def test_synthsr_on_the_corpus(tmp_path):
    bids, cases = build_corpus(tmp_path)
    applicable = [c for c in cases if c.synthsr is not None]
    before = snapshot(bids)
    out = tmp_path / "synthsr-out"
    inputs, outputs = tmp_path / "inputs.txt", tmp_path / "outputs.txt"
    inputs.write_text("".join(f"{bids / c.relpath}\n" for c in applicable))
    outputs.write_text("".join(f"{out / f'case{i:02d}_synthsr.nii.gz'}\n" for i in range(len(applicable))))
    # what a synthsr killed with -9 mid-write leaves beside its output: the next run removes it
    out.mkdir()
    killed = out / f".case00_synthsr.nii.gz.{host_label()}-{_dead_pid()}.abcd1234.nii.gz"
    killed.write_bytes(b"\x1f\x8b partial")
    proc = _run("synthsr_nipype.cli.synthsr", "--i", str(inputs), "--o", str(outputs), "--model", str(TINY),
                cwd=tmp_path)
    console = proc.stdout + proc.stderr
    assert "Traceback" not in console, console[-3000:]
    assert proc.returncode == EXIT_IMAGE_FAILED, console[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR:")]
    warned = [line for line in proc.stderr.splitlines() if line.startswith("WARNING:")]

    outcome: dict[str, str] = {}
    for index, case in enumerate(applicable):
        naming = _lines_naming(errors, str(bids / case.relpath))
        target = out / f"case{index:02d}_synthsr.nii.gz"
        if case.synthsr:
            assert len(naming) == 1, (case.name, naming)
            assert case.synthsr in naming[0], (case.name, naming[0])
            assert not target.exists(), case.name
            outcome[case.name] = "refused"
        else:
            assert not naming, (case.name, naming)
            assert target.is_file(), case.name
            outcome[case.name] = "processed"
        if case.warning:
            _check_warned(case, warned, str(bids / case.relpath), bids / case.relpath, target)
            outcome[case.name] = "processed with a warning"
    n_failed = sum(1 for c in applicable if c.synthsr)
    assert f"ERROR: {n_failed} of {len(applicable)} job(s) failed" in proc.stderr
    _assert_nothing_partial(out)
    assert snapshot(bids) == before
    _print_counts("synthsr", applicable, outcome)



def test_docs_refusal_table_matches_the_corpus(tmp_path):
    """Each row of the audit table in docs/bids-app.md names corpus cases whose outcome is the
    row's 'ours' column (refused / processed, warned or not); the corpus runs above check them."""
    import re

    from tests.paths import REPO

    text = (REPO / "docs" / "bids-app.md").read_text()
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and re.search(r"\| [hdo]\d\d(, [hdo]\d\d)* \|$", line)]
    _, cases = build_corpus(tmp_path)
    by_subject = {c.subject: c for c in cases}
    assert len(rows) >= 15, rows
    for row in rows:
        condition, _, ours, ids = [cell.strip() for cell in row.strip("|").split("|")]
        for sub in ids.split(", "):
            case = by_subject[sub]
            if ours.startswith("refused"):
                assert case.bids and case.synthsr, (condition, case)
            elif ours.startswith("`synthsr`: the same"):
                assert case.bids and case.synthsr == "", (condition, case)
            else:
                assert ours.startswith("processed") and case.bids == "" == case.synthsr, (condition, case)
                assert bool(case.warning) == ("warned" in ours), (condition, case)
    print(f"{len(rows)} rows of the refusal table checked against the corpus cases")
