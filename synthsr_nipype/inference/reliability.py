"""Where a SynthSR output is measured and where it is the network's prior: per-voxel reliability in [0, 1].

The one home of the formula (documented, with its reasons, in ``docs/qc.md``).  Everything here is a pure
function of arrays and affines; the commands, the Nipype interfaces and the reports call these.

For one scan, on the output's 1 mm grid::

    reliability = coverage x agreement

* ``coverage``: per input axis ``i`` (spacing ``s_i`` and slice thickness ``t_i``, from the header's affine;
  the thickness defaults to the spacing, i.e. contiguous slices), ``d_i`` is the distance in mm from the output
  voxel's centre to the nearest acquired slice centre along that axis, and::

      coverage_i = exp(-1/2 (max(0, d_i - 1/2) / 1 mm)^2) * exp(-1/2 (max(0, d_i - t_i/2) / 1 mm)^2)

  The first factor is the distance beyond what a 1 mm grid needs itself (a 1 mm input has ``d_i <= 0.5``
  everywhere: coverage 1), on the scale of the output's 1 mm resolution; the second is the distance into a slice
  gap, where nothing was excited at all (1 when the slices touch or overlap).  ``coverage`` is their product
  over the three axes, 0 outside the input's field of view.
* ``agreement = 1 - min(1, |pass1 - flip(pass2)| / T)``: the two left-right passes the network runs for its
  test-time augmentation disagree where the input does not pin the answer down; ``T`` is
  :data:`CONTRAST_FRACTION` of the output's bright-tissue intensity (its 99th percentile), about the grey/white
  contrast of an MP-RAGE: a disagreement that large means the network could not tell the tissue class.

For a fused image (the per-scan maps resampled onto the fused grid with the registration)::

    reliability = (1 - prod_k (1 - reliability_k)) x (1 - min(1, spread / T))

the chance that at least one scan measured the voxel, times the agreement of the registered per-scan outputs
(``spread``: median absolute deviation from their median, the fusion's own statistic).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .geometry import voxel_sizes

#: Length scale (mm) over which information decays away from a measured point: the output's resolution.
RESOLUTION_MM = 1.0
#: A disagreement (TTA passes, registered scans) of this fraction of the bright-tissue intensity counts as
#: total: the grey/white contrast of MP-RAGE is about a quarter to a third of the white matter's intensity.
CONTRAST_FRACTION = 0.25
#: A voxel counts as covered by a scan (the fused image's scan count) from this coverage on.
COVERED = 0.5
#: "No slice within" this distance (mm) for the QC fraction: twice the output's resolution, less than the
#: cortex's thickness (2.5 mm), so a structure that thin may lie entirely between two slices.
UNCOVERED_MM = 2.0
#: "Within" includes this much more (mm): SynthSR's output grid keeps the input's axes, so on a thick-slice scan
#: many voxels lie exactly 2 mm from a slice, and the float32 rounding of a written affine (2.5e-6 mm) moved 0.7 %
#: of a brain across the threshold (measured on the BIDS-App test dataset's oblique 5 mm T2).
UNCOVERED_TOLERANCE_MM = 1e-3


@dataclass
class Coverage:
    """Acquisition coverage of one scan on an output grid."""

    coverage: np.ndarray  # float32 [0, 1]
    # float32: the largest over the input's axes of the distance (mm) to the nearest slice centre along it (for
    # a thick-slice scan, the distance to the nearest slice); inf outside the FOV
    distance_mm: np.ndarray


def _axis_coverage(d: np.ndarray, thickness: float) -> np.ndarray:
    near = np.maximum(d - 0.5 * RESOLUTION_MM, 0) / RESOLUTION_MM
    gap = np.maximum(d - 0.5 * thickness, 0) / RESOLUTION_MM
    return np.exp(-0.5 * (near * near + gap * gap))


def axis_thickness(affine: np.ndarray, slice_thickness: float | None,
                   direction: str | None = None) -> list[float] | None:
    """Per voxel axis, the slice thickness :func:`acquisition_coverage` takes: the spacing, except along the
    slice axis (BIDS ``SliceEncodingDirection`` ``i``/``j``/``k``, else the axis of the largest spacing), where
    it is ``slice_thickness``; ``None`` (contiguous slices) when that is unknown or the grid is isotropic
    without a direction.

    >>> axis_thickness(np.diag([1.0, 1.0, 6.0, 1.0]), 5.0)
    [1.0, 1.0, 5.0]
    >>> axis_thickness(np.diag([1.0, 1.0, 1.0, 1.0]), 0.8) is None
    True
    """
    if not slice_thickness or not np.isfinite(slice_thickness) or slice_thickness <= 0:
        return None
    spacing = voxel_sizes(affine)
    if direction in ("i", "j", "k"):
        axis = "ijk".index(direction)
    elif np.ptp(spacing) > 0.01 * spacing.max():
        axis = int(np.argmax(spacing))
    else:
        return None
    thickness = [float(s) for s in spacing]
    thickness[axis] = float(slice_thickness)
    return thickness


def input_thickness(affines: Sequence[np.ndarray], slice_thickness: Sequence[float] | None,
                    directions: Sequence[str] | None = None) -> list[list[float] | None] | None:
    """:func:`axis_thickness` of each input (``slice_thickness``: one per input, 0 unknown)."""
    if not slice_thickness:
        return None
    directions = list(directions or [""] * len(affines))
    return [axis_thickness(a, t, d or None) for a, t, d in zip(affines, slice_thickness, directions)]


def acquisition_coverage(out_shape: Sequence[int], out_affine: np.ndarray, in_shape: Sequence[int],
                         in_affine: np.ndarray, thickness: Sequence[float] | None = None) -> Coverage:
    """Coverage of the output grid ``(out_shape, out_affine)`` by the scan ``(in_shape, in_affine)``.

    ``thickness`` (mm, per input voxel axis) defaults to the spacing; a BIDS ``SliceThickness`` under the
    spacing (slice gaps) lowers the coverage between slices.
    """
    spacing = voxel_sizes(in_affine)
    thick = spacing if thickness is None else np.asarray(thickness, dtype=np.float64)
    if thick.shape != (3,) or not np.all(np.isfinite(thick)) or np.any(thick <= 0):
        raise ValueError(f"slice thickness must be 3 positive numbers, got {thickness!r}")
    to_input = np.linalg.inv(np.asarray(in_affine, dtype=np.float64)) @ np.asarray(out_affine, dtype=np.float64)
    shape = tuple(int(s) for s in out_shape[:3])
    cover = np.empty(shape, dtype=np.float32)
    dist = np.empty(shape, dtype=np.float32)
    ys, zs = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    # one output plane at a time: a 256^3 grid in float64 coordinates would be 400 MB
    for x in range(shape[0]):
        coords = [to_input[i, 0] * x + to_input[i, 1] * ys + to_input[i, 2] * zs + to_input[i, 3] for i in range(3)]
        plane_cover = np.ones(ys.shape)
        plane_dist = np.zeros(ys.shape)
        inside = np.ones(ys.shape, dtype=bool)
        for i, c in enumerate(coords):
            inside &= (c >= -0.5) & (c <= in_shape[i] - 0.5)
            d = np.abs(c - np.rint(c)) * spacing[i]
            plane_cover *= _axis_coverage(d, float(thick[i]))
            plane_dist = np.maximum(plane_dist, d)
        cover[x] = np.where(inside, plane_cover, 0)
        dist[x] = np.where(inside, plane_dist, np.inf)
    return Coverage(coverage=cover, distance_mm=dist)


def disagreement_scale(output: np.ndarray) -> float:
    """``T``: :data:`CONTRAST_FRACTION` of the output's bright-tissue intensity (99th percentile of its
    non-zero voxels), in the output's units."""
    values = np.asarray(output, dtype=np.float32)
    values = values[values > 0]
    top = float(np.percentile(values, 99)) if values.size else 0.0
    return max(CONTRAST_FRACTION * top, 1e-6)


def agreement(difference: np.ndarray | None, scale: float) -> np.ndarray | float:
    """``1 - min(1, difference / scale)`` (1 where there is nothing to compare: no TTA, one scan)."""
    if difference is None:
        return 1.0
    return (1.0 - np.minimum(np.abs(np.asarray(difference, dtype=np.float32)) / np.float32(scale), 1.0)).astype(
        np.float32)


def scan_reliability(coverage: np.ndarray, tta_difference: np.ndarray | None, output: np.ndarray) -> np.ndarray:
    """One scan's reliability: coverage x TTA agreement, float32 in [0, 1] on the output grid."""
    agree = agreement(tta_difference, disagreement_scale(output))
    return np.clip(np.asarray(coverage, dtype=np.float32) * agree, 0, 1).astype(np.float32)


def union(maps: Sequence[np.ndarray]) -> np.ndarray:
    """``1 - prod (1 - m_k)``: the chance that at least one of independent measurements holds."""
    missing = np.ones(np.shape(maps[0]), dtype=np.float32)
    for m in maps:
        missing *= 1.0 - np.clip(np.asarray(m, dtype=np.float32), 0, 1)
    return 1.0 - missing


def spread(stack: np.ndarray) -> np.ndarray:
    """Median absolute deviation from the median over the first axis (the registered per-scan outputs)."""
    data = np.asarray(stack, dtype=np.float32)
    centre = np.median(data, axis=0)
    return np.median(np.abs(data - centre), axis=0).astype(np.float32)


def fused_reliability(scan_maps: Sequence[np.ndarray], stack: np.ndarray | None, fused: np.ndarray) -> np.ndarray:
    """Reliability of a fused image from the per-scan maps already on its grid and the registered outputs."""
    measured = union(scan_maps)
    if stack is None or len(stack) < 2:
        return measured.astype(np.float32)
    agree = agreement(spread(stack), disagreement_scale(fused))
    return np.clip(measured * agree, 0, 1).astype(np.float32)


def scans_covering(coverages: Sequence[np.ndarray]) -> np.ndarray:
    """How many scans cover each voxel (coverage at least :data:`COVERED`), uint8."""
    return np.sum([np.asarray(c) >= COVERED for c in coverages], axis=0).astype(np.uint8)


def brain_region(output: np.ndarray) -> np.ndarray:
    """Where the QC numbers are taken: voxels brighter than a third of the bright-tissue intensity.

    A SynthSR output is MP-RAGE-like whatever the input: grey and white matter are above a third of the white
    matter's intensity, CSF, skull and background below (skull-on outputs keep some scalp, which has high
    coverage and agreement anyway, so it barely moves the means).
    """
    values = np.asarray(output, dtype=np.float32)
    positive = values[values > 0]
    if not positive.size:
        return np.zeros(values.shape, dtype=bool)
    return values > np.percentile(positive, 99) / 3.0


def qc_numbers(reliability: np.ndarray, distance_mm: np.ndarray, output: np.ndarray,
               tta_difference: np.ndarray | None = None) -> dict[str, float | None]:
    """Per-scan QC inside the brain: mean reliability, fraction with no slice within :data:`UNCOVERED_MM`,
    mean normalised TTA disagreement (``None`` without TTA)."""
    brain = brain_region(output)
    if not brain.any():
        return {"MeanReliability": 0.0, "UncoveredFraction": 1.0, "TTADisagreement": None}
    tta = None
    if tta_difference is not None:
        tta = float(np.mean(np.minimum(np.abs(tta_difference[brain]) / disagreement_scale(output), 1.0)))
    return {
        "MeanReliability": round(float(np.mean(reliability[brain])), 4),
        "UncoveredFraction": uncovered_fraction(distance_mm, brain),
        "TTADisagreement": None if tta is None else round(tta, 4),
    }


def uncovered_fraction(distance_mm: np.ndarray, brain: np.ndarray) -> float:
    """The QC's ``UncoveredFraction``: the share of ``brain`` with no slice within :data:`UNCOVERED_MM`
    (:data:`UNCOVERED_TOLERANCE_MM` included)."""
    if not brain.any():
        return 1.0
    return round(float(np.mean(distance_mm[brain] > UNCOVERED_MM + UNCOVERED_TOLERANCE_MM)), 4)


@dataclass
class ScanReliability:
    """A SynthSR output's reliability map and what it was made of (all on the output grid)."""

    reliability: np.ndarray  # float32 [0, 1]
    coverage: np.ndarray  # float32 [0, 1]
    distance_mm: np.ndarray  # float32
    qc: dict[str, float | None]


def output_reliability(output: np.ndarray, out_affine: np.ndarray,
                       inputs: Sequence[tuple[Sequence[int], np.ndarray]],
                       tta_difference: np.ndarray | None = None,
                       thickness: Sequence[Sequence[float] | None] | None = None) -> ScanReliability:
    """The reliability of one SynthSR output from its input scans' grids (``(shape, affine)`` each; the
    channels of a multi-channel model each cover the voxel: their union) and the TTA difference."""
    thickness = list(thickness) if thickness is not None else [None] * len(inputs)
    parts = [acquisition_coverage(output.shape, out_affine, shape, affine, thick)
             for (shape, affine), thick in zip(inputs, thickness)]
    coverage = union([p.coverage for p in parts]) if len(parts) > 1 else parts[0].coverage
    distance = np.minimum.reduce([p.distance_mm for p in parts]) if len(parts) > 1 else parts[0].distance_mm
    reliability = scan_reliability(coverage, tta_difference, output)
    return ScanReliability(reliability=reliability, coverage=coverage, distance_mm=distance,
                           qc=qc_numbers(reliability, distance, output, tta_difference))


def contiguous_qc(spacing_mm: float) -> tuple[float, float]:
    """Mean coverage and uncovered fraction of contiguous slices of ``spacing_mm`` (in-plane 1 mm), averaged over
    the phase of the output grid against the slices: the yardstick the QC thresholds are read from."""
    d = np.linspace(0, spacing_mm / 2, 20001)
    return float(np.mean(_axis_coverage(d, spacing_mm))), float(np.mean(d > UNCOVERED_MM))


#: Flag thresholds (docs/qc.md): a scan is flagged when it is worse than contiguous slices of these spacings.
#: 6 mm is the thickest acquisition ``benchmarks/superres_real.py`` evaluates; 7 mm is one step beyond it for
#: the mean reliability, because reliability also contains the TTA agreement (at most 1) and a 6 mm scan
#: should not be flagged for a network that hesitates a little.
UNCOVERED_REFERENCE_MM = 6.0
RELIABILITY_REFERENCE_MM = 7.0
#: Mean normalised TTA disagreement above which a scan is flagged: the two passes differ, on average over the
#: brain, by a quarter of the grey/white contrast (`lite` gives 0.21-0.28 on 5 mm scans: docs/qc.md, "Measured").
TTA_THRESHOLD = 0.25


def qc_flags(qc: dict[str, float | None]) -> list[str]:
    """The reasons a scan's QC numbers are flagged (empty: none), one short sentence each."""
    low = contiguous_qc(RELIABILITY_REFERENCE_MM)[0]
    uncovered = contiguous_qc(UNCOVERED_REFERENCE_MM)[1]
    flags = []
    if qc.get("MeanReliability") is not None and qc["MeanReliability"] < low:
        flags.append(f"mean reliability {qc['MeanReliability']:.2f} < {low:.2f} (contiguous "
                     f"{RELIABILITY_REFERENCE_MM:g} mm slices)")
    if qc.get("UncoveredFraction") is not None and qc["UncoveredFraction"] > uncovered + 1e-3:
        flags.append(f"{100 * qc['UncoveredFraction']:.0f} % of the brain has no slice within {UNCOVERED_MM:g} mm "
                     f"(> {100 * uncovered:.0f} %, contiguous {UNCOVERED_REFERENCE_MM:g} mm slices)")
    residuals = qc.get("RegistrationResidual") or []
    if residuals and max(residuals) > TTA_THRESHOLD:
        # the same yardstick: a registered scan off the fused image by a quarter of the contrast is misplaced
        flags.append(f"a registered scan differs from the fused image ({max(residuals):.2f} > {TTA_THRESHOLD:g} of "
                     "the grey/white contrast)")
    if qc.get("TTADisagreement") is not None and qc["TTADisagreement"] > TTA_THRESHOLD:
        flags.append(f"left-right passes disagree ({qc['TTADisagreement']:.2f} > {TTA_THRESHOLD:g} of the "
                     "grey/white contrast)")
    return flags


FORMULA = ("reliability = coverage x (1 - min(1, |pass1 - flip(pass2)| / T)); coverage = prod_i "
           "exp(-1/2 (max(0, d_i - 0.5)/1 mm)^2) exp(-1/2 (max(0, d_i - t_i/2)/1 mm)^2), d_i the distance to the "
           "nearest slice centre along input axis i, t_i the slice thickness; T = 0.25 x the output's 99th "
           "percentile (docs/qc.md)")
FUSED_FORMULA = ("reliability = (1 - prod_k (1 - reliability_k)) x (1 - min(1, MAD_k(outputs) / T)), the per-scan "
                 "maps and outputs resampled onto the fused grid with their rigid registrations (docs/qc.md)")


def map_image(reliability: np.ndarray, like):
    """The map as a float32 NIfTI image on ``like``'s grid (the output it describes)."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(reliability, dtype=np.float32), like.affine)
    image.set_data_dtype(np.float32)
    image.header.set_xyzt_units("mm")
    return image


def sidecar(qc: dict[str, float | None], *, fused: bool = False, **inputs) -> dict:
    """What a reliability map's JSON holds: the formula, its inputs, the QC numbers and their flags."""
    meta = {"Description": "Per-voxel reliability of the SynthSR output (0: network prior only, 1: measured "
                           "and reproducible)",
            "Formula": FUSED_FORMULA if fused else FORMULA,
            "QC": dict(qc), "QCFlags": qc_flags(qc)}
    meta.update({k: v for k, v in inputs.items() if v is not None})
    return meta
