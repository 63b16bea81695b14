"""An interrupt that lands where Python cannot raise it (a ``__del__``, a weakref callback: SQLAlchemy's in
pybids' index) prints nothing: the run stops at the next node boundary with its one line (CI saw 'Exception
ignored in: <bound method InstanceState._cleanup ...>' before the line after a SIGTERM)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import sys
    from synthsr_nipype.cli import bids_app

    class Finaliser:
        def __init__(self, exc):
            self.exc = exc
        def __del__(self):
            raise self.exc

    sys.unraisablehook = bids_app._quiet_interrupts(sys.unraisablehook)
    bids_app._interrupted.set()
    Finaliser(KeyboardInterrupt("SIGTERM"))  # ours: dropped
    print("still running", file=sys.stderr)
    Finaliser(ValueError("a real problem"))  # anything else: reported as usual
    bids_app._interrupted.clear()
    Finaliser(KeyboardInterrupt("not ours"))  # no signal came: reported as usual
""")


def test_own_interrupt_in_a_finaliser_prints_nothing():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "still running", lines
    assert "ValueError: a real problem" in proc.stderr and "KeyboardInterrupt: not ours" in proc.stderr
    assert "SIGTERM" not in proc.stderr
