"""SVG reportlets of the per-subject report: what went into SynthSR and what came out.

Each figure shows three orthogonal planes through the centre of a base image, cut in its own voxel grid (after
the flips and transpositions that bring it closest to RAS, so nothing is interpolated: a thick-slice scan shows
its slices); other images are drawn over it as contours, sampled on those planes through both images' world
coordinates, so a wrong header puts the contour in the wrong place.  Only the three planes are sampled, never
whole volumes, which keeps a figure well under a second.  Matplotlib writes the SVG (slices as embedded
rasters, contours as vectors, as fMRIPrep's reportlets), through a temporary file and a rename.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from scipy.ndimage import map_coordinates  # noqa: E402

#: contour colours: the input's outline, and a scan before / after its registration onto the reference
OUTLINE, BEFORE, AFTER = "#ff3b30", "#ff9f0a", "#30d158"
PLANES = ("sagittal", "coronal", "axial")


def _volume(image: nib.spatialimages.SpatialImage) -> np.ndarray:
    data = np.asarray(image.dataobj, dtype=np.float32)
    return data.reshape(data.shape[:3] + (-1,))[..., 0] if data.ndim > 3 else data


def _canonical(image: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.Nifti1Image(_volume(image), image.affine))


def _plane_voxels(shape: Sequence[int], axis: int) -> np.ndarray:
    """Voxel coordinates (3, rows, cols) of the centre plane across ``axis``, rows = the later axis."""
    keep = [a for a in range(3) if a != axis]
    cols, rows = np.meshgrid(np.arange(shape[keep[0]]), np.arange(shape[keep[1]]))
    ijk = np.empty((3, *rows.shape), dtype=np.float64)
    ijk[axis] = (shape[axis] - 1) // 2
    ijk[keep[0]], ijk[keep[1]] = cols, rows
    return ijk


def sample_plane(base: nib.Nifti1Image, other: nib.spatialimages.SpatialImage, axis: int,
                 order: int = 1) -> np.ndarray:
    """``other`` on ``base``'s centre plane across ``axis``, through world coordinates (0 outside)."""
    ijk = _plane_voxels(base.shape[:3], axis)
    world = np.tensordot(base.affine[:3, :3], ijk, axes=1) + base.affine[:3, 3, None, None]
    inverse = np.linalg.inv(other.affine)
    other_ijk = np.tensordot(inverse[:3, :3], world, axes=1) + inverse[:3, 3, None, None]
    return map_coordinates(_volume(other), other_ijk, order=order, cval=0.0, mode="constant")


def _draw(axes: Sequence[plt.Axes], base: nib.Nifti1Image, title: str,
          contours: Sequence[tuple[nib.spatialimages.SpatialImage, str, float]] = ()) -> None:
    """Three planes of ``base``; ``contours``: (image, colour, its outline threshold or 0 for a mask)."""
    data = base.get_fdata(dtype=np.float32)
    zooms = base.header.get_zooms()[:3]
    vmax = float(np.percentile(data[data > 0], 99.5)) if (data > 0).any() else 1.0
    for axis, ax in enumerate(axes):
        plane = sample_plane(base, base, axis, order=0)
        keep = [a for a in range(3) if a != axis]
        ax.imshow(plane, cmap="gray", vmin=0, vmax=vmax, origin="lower", interpolation="nearest",
                  aspect=zooms[keep[1]] / zooms[keep[0]])
        for image, colour, threshold in contours:
            values = sample_plane(base, image, axis, order=1 if threshold else 0)
            mask = values > threshold if threshold else values > 0.5
            if mask.any() and not mask.all():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.0)
        ax.set_axis_off()
        ax.text(0.02, 0.02, PLANES[axis], transform=ax.transAxes, color="white", fontsize=7)
    axes[1].set_title(title, color="white", fontsize=9)


def _outline_threshold(image: nib.spatialimages.SpatialImage) -> float:
    data = _volume(image)
    positive = data[data > 0]
    return 0.2 * float(np.percentile(positive, 98)) if positive.size else 0.0


def _save(figure: plt.Figure, path: str | os.PathLike[str]) -> Path:
    from ..atomic import atomic_target

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # no date and fixed element ids: the same images give the same file (reruns compare equal)
        with matplotlib.rc_context({"svg.hashsalt": "synthsr-nipype"}), atomic_target(target) as partial:
            figure.savefig(partial, format="svg", facecolor="black", bbox_inches="tight", dpi=80,
                           metadata={"Date": None})
    finally:
        plt.close(figure)
    return target


def _figure(rows: int = 1) -> tuple[plt.Figure, np.ndarray]:
    figure, axes = plt.subplots(rows, 3, figsize=(9, 3.1 * rows), facecolor="black", squeeze=False)
    figure.subplots_adjust(wspace=0.02, hspace=0.25)
    return figure, axes


def plot_views(image_path: str | os.PathLike[str], out_svg: str | os.PathLike[str], title: str) -> Path:
    """Three orthogonal planes of one image in its own grid (a thick-slice scan shows its slices)."""
    figure, axes = _figure()
    _draw(axes[0], _canonical(nib.load(image_path)), title)
    return _save(figure, out_svg)


def plot_outline(output_path: str | os.PathLike[str], input_path: str | os.PathLike[str],
                 out_svg: str | os.PathLike[str]) -> Path:
    """The SynthSR output with the input's outline over it: a flipped or shifted header shows at once."""
    source = nib.load(input_path)
    figure, axes = _figure()
    _draw(axes[0], _canonical(nib.load(output_path)), "SynthSR output; input outline in red",
          [(source, OUTLINE, _outline_threshold(source))])
    return _save(figure, out_svg)


def plot_registration(fixed_path: str | os.PathLike[str], scan_output_path: str | os.PathLike[str],
                      xfm_path: str | os.PathLike[str], out_svg: str | os.PathLike[str]) -> Path:
    """The image a scan was registered onto (the reference's synthetic image) with the scan's outline
    before (orange) and after (green) its ``_xfm`` transform."""
    import ants  # antspyx applies the ITK text transform the fusion wrote, as the fusion itself did

    fixed = nib.load(fixed_path)
    scan = nib.load(scan_output_path)
    moved = ants.apply_transforms(fixed=ants.image_read(str(fixed_path)),
                                  moving=ants.image_read(str(scan_output_path)),
                                  transformlist=[str(xfm_path)], interpolator="linear")
    registered = nib.Nifti1Image(moved.numpy().astype(np.float32), fixed.affine)
    base = _canonical(fixed)
    threshold = _outline_threshold(scan)
    figure, axes = _figure(rows=2)
    _draw(axes[0], base, "before registration: scan outline in orange", [(scan, BEFORE, threshold)])
    _draw(axes[1], base, "after registration: scan outline in green", [(registered, AFTER, threshold)])
    return _save(figure, out_svg)


def segmentation_legend(dseg_path: str | os.PathLike[str]) -> list[tuple[int, str, str]]:
    """(label value, name, colour) of every label in a segmentation: the names from its BIDS look-up
    table (``_dseg.tsv``: index, name; its ``color`` column when there is one), else ``label <value>``.
    The figure and the page's legend both take their colours from here."""
    from matplotlib.colors import to_hex

    dseg = nib.load(dseg_path)
    values = [int(v) for v in np.unique(np.asarray(dseg.dataobj)) if v != 0]
    table = Path(str(dseg_path).removesuffix(".gz").removesuffix(".nii") + ".tsv")
    names: dict[int, str] = {}
    colours: dict[int, str] = {}
    if table.is_file():
        lines = [line.split("\t") for line in table.read_text().splitlines() if line.strip()]
        header = lines[0] if lines else []
        for row in lines[1:]:
            entry = dict(zip(header, row))
            try:
                index = int(entry.get("index", ""))
            except ValueError:
                continue
            names[index] = entry.get("name", "") or f"label {index}"
            if entry.get("color", "").startswith("#"):
                colours[index] = entry["color"]
    palette = plt.get_cmap("tab20" if len(values) > 10 else "tab10")
    return [(value, names.get(value, f"label {value}"), colours.get(value, to_hex(palette(i % palette.N))))
            for i, value in enumerate(values)]


def plot_segmentation(t1w_path: str | os.PathLike[str], dseg_path: str | os.PathLike[str],
                      out_svg: str | os.PathLike[str], legend: Sequence[tuple[int, str, str]]) -> Path:
    """The fused image with the boundary of every label of ``legend`` (from :func:`segmentation_legend`)
    in its colour; the page draws the legend beside the figure, from the same list."""
    dseg = nib.load(dseg_path)
    labels = np.asarray(dseg.dataobj)
    masks = [(nib.Nifti1Image((labels == value).astype(np.float32), dseg.affine), colour, 0.0)
             for value, _, colour in legend]
    figure, axes = _figure()
    _draw(axes[0], _canonical(nib.load(t1w_path)), "segmentation", masks)
    return _save(figure, out_svg)


def plot_logjacobian(map_path: str | os.PathLike[str], template_path: str | os.PathLike[str] | None,
                     out_svg: str | os.PathLike[str], label: str) -> Path:
    """The TBM map (log det Jacobian, template space) in a diverging colour map over the template, with a
    colour bar named ``label``; symmetric limits at the 99th percentile of the map's magnitude."""
    from matplotlib import colormaps

    logjac = _canonical(nib.load(map_path))
    values = logjac.get_fdata(dtype=np.float32)
    nonzero = np.abs(values[values != 0])
    limit = float(np.percentile(nonzero, 99)) if nonzero.size else 1.0
    base = _canonical(nib.load(template_path)) if template_path else logjac
    figure, axes = _figure()
    _draw(axes[0], base, "log det Jacobian (template space)")
    zooms = base.header.get_zooms()[:3]
    image = None
    for axis, ax in enumerate(axes[0]):
        plane = sample_plane(base, logjac, axis, order=0)
        keep = [a for a in range(3) if a != axis]
        shown = np.ma.masked_where(plane == 0, plane)
        image = ax.imshow(shown, cmap=colormaps["RdBu_r"], vmin=-limit, vmax=limit, origin="lower",
                          interpolation="nearest", alpha=0.75, aspect=zooms[keep[1]] / zooms[keep[0]])
    bar = figure.colorbar(image, ax=list(axes[0]), orientation="horizontal", fraction=0.05, pad=0.02)
    bar.set_label(label, color="white", fontsize=7)
    bar.ax.tick_params(colors="white", labelsize=7)
    return _save(figure, out_svg)


def plot_reliability(output_path: str | os.PathLike[str], map_path: str | os.PathLike[str],
                     out_svg: str | os.PathLike[str]) -> Path:
    """The output with its reliability map over it (red: the network's prior, green: measured; docs/qc.md)."""
    base = _canonical(nib.load(output_path))
    reliability = nib.load(map_path)
    figure, axes = _figure()
    _draw(axes[0], base, "reliability over the output: red = prior only, green = measured")
    zooms = base.header.get_zooms()[:3]
    for axis, ax in enumerate(axes[0]):
        values = sample_plane(base, reliability, axis, order=0)
        keep = [a for a in range(3) if a != axis]
        ax.imshow(np.ma.masked_where(sample_plane(base, base, axis, order=0) <= 0, values), cmap="RdYlGn",
                  vmin=0, vmax=1, alpha=0.45, origin="lower", interpolation="nearest",
                  aspect=zooms[keep[1]] / zooms[keep[0]])
    return _save(figure, out_svg)
