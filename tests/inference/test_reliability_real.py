"""docs/qc.md's measured property on a real scan: where the reliability map is lower, `lite`'s output is
further from the real T1 (the real 0.8 mm T1 degraded to 5 mm axial slices, as benchmarks/reliability_real.py
measures it for every acquisition)."""

from __future__ import annotations

import pytest

from tests.paths import REAL

HIRES = REAL / "hires-t1" / "T1.nii.gz"


@pytest.mark.skipif(not HIRES.is_file(), reason="shared data (../shared) not available")
def test_lower_reliability_goes_with_larger_error_on_a_real_scan():
    import nibabel as nib

    from benchmarks.reliability_real import measure_acquisition

    row, _, _ = measure_acquisition(nib.load(HIRES), "axial5", "lite", threads=2)
    rho = row["spearman_reliability_vs_abs_error"]
    most, least = row["mae_most_reliable_third"], row["mae_least_reliable_third"]
    print(f"\naxial5, lite: Spearman(reliability, |error|) {rho:+.3f}; MAE most reliable third {most:.1f}, "
          f"least reliable third {least:.1f} ({least / most - 1:+.1%})")
    assert rho < 0
    assert least > most
