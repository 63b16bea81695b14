"""Scratch in the work dir, also when the work dir is too deep for the forkserver's Unix socket."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from synthsr_nipype.workflows.execution import SCRATCH_LINK_PREFIX, scratch_dir, scratch_link

# A child process: starts MultiProc's forkserver inside scratch_environment, runs one task in it,
# and prints where multiprocessing's folder is and whether the link exists while it runs.
CHILD = textwrap.dedent("""
    import multiprocessing, os, sys, tempfile
    from pathlib import Path
    from synthsr_nipype.workflows.execution import scratch_environment, scratch_link, scratch_dir

    def task():
        return tempfile.gettempdir()

    if __name__ == "__main__":
        work = Path(sys.argv[1])
        link = scratch_link(scratch_dir(work))  # before: inside, the temporary folder is the link
        with scratch_environment(work):
            ctx = multiprocessing.get_context("forkserver")
            with ctx.Pool(1) as pool:
                child_tmp = pool.apply(task)
            print(link is not None and link.is_symlink())
            print(Path(multiprocessing.util.get_temp_dir()).resolve().parent)
            print(Path(child_tmp).resolve())
""")


def _run(tmp_path: Path, work: Path) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(work)], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path / "sys"),
                                            "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout.splitlines()


def test_short_work_dir_needs_no_link(tmp_path):
    (tmp_path / "sys").mkdir()
    linked, mp_parent, child_tmp = _run(tmp_path, tmp_path / "work")
    assert linked == "False"
    scratch = scratch_dir(tmp_path / "work").resolve()
    assert Path(mp_parent) == scratch and Path(child_tmp) == scratch
    assert list((tmp_path / "sys").iterdir()) == []


def test_deep_work_dir_reaches_its_scratch_through_a_short_link(tmp_path):
    """A 150-character work dir: the socket path would exceed 107 bytes (OSError 'AF_UNIX path too
    long' before the fix); the files still land in the work dir and the link goes at exit."""
    (tmp_path / "sys").mkdir()
    work = tmp_path / ("d" * 60) / ("e" * 60) / "work"
    assert scratch_link(scratch_dir(work)) is not None
    linked, mp_parent, child_tmp = _run(tmp_path, work)
    scratch = scratch_dir(work).resolve()
    assert linked == "True" and Path(mp_parent) == scratch and Path(child_tmp) == scratch
    assert [p for p in (tmp_path / "sys").iterdir() if p.name.startswith(SCRATCH_LINK_PREFIX)] == []
    assert list((tmp_path / "sys").iterdir()) == []
