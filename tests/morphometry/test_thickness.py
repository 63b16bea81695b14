"""DiReCT cortical thickness (morphometry.thickness) on a phantom of known thickness."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest
from scipy import ndimage

from synthsr_nipype.atomic import read_tsv
from synthsr_nipype.morphometry import thickness

WM_RADIUS = 9.0


def _phantom(tmp_path, gm_mm: float, tag: str):
    """WM ball, a GM shell ``gm_mm`` thick, CSF around it (1 mm grid); posteriors with a 1-voxel blur."""
    grid = np.indices((36, 36, 36)).astype(float) - 17.5
    r = np.sqrt((grid**2).sum(0))
    dseg = np.where(r <= WM_RADIUS, 3, np.where(r <= WM_RADIUS + gm_mm, 2, np.where(r <= WM_RADIUS + gm_mm + 4, 1, 0)))
    affine = np.eye(4)
    paths = {}
    for name, data in (("dseg", dseg.astype(np.uint8)),
                       ("gm", ndimage.gaussian_filter((dseg == 2).astype(np.float32), 0.5)),
                       ("wm", ndimage.gaussian_filter((dseg == 3).astype(np.float32), 0.5)),
                       ("regions", np.where(grid[0] < 0, 1, 2).astype(np.uint8) * (dseg > 0))):
        paths[name] = tmp_path / f"{tag}_{name}.nii.gz"
        nb.Nifti1Image(data, affine).to_filename(paths[name])
    return paths


@pytest.mark.parametrize(("gm_mm", "low", "high"), [(2.0, 0.5, 2.5), (4.0, 2.5, 4.5)])
def test_direct_measures_a_known_shell(tmp_path, gm_mm, low, high):
    p = _phantom(tmp_path, gm_mm, f"gm{gm_mm}")
    res = thickness.cortical_thickness(p["dseg"], p["gm"], p["wm"], tmp_path / f"out{gm_mm}",
                                       regions=p["regions"], region_names=thickness.HEMISPHERES)
    table = read_tsv(res["thickness_tsv"]).set_index("name")
    print(table)
    assert list(read_tsv(res["thickness_tsv"]).columns) == thickness.THICKNESS_COLUMNS
    # DiReCT reads ~1 mm under the truth on a 1 mm grid (measured: 2 -> 1.04, 4 -> 3.21 mm; see
    # docs/morphometry.md); both halves alike
    assert low < res["mean_thickness"] < high, res["mean_thickness"]
    left, right = table.at["Left-Cerebral-Cortex", "thickness-mm"], table.at["Right-Cerebral-Cortex", "thickness-mm"]
    assert left == pytest.approx(right, abs=0.2)
    img = nb.load(res["thickness"])
    th = img.get_fdata()
    dseg = nb.load(p["dseg"]).get_fdata()
    assert th[dseg != 2].max() == 0 and (th[dseg == 2] > 0).mean() > 0.9



@pytest.mark.parametrize("case", ["no cortex", "no white matter", "all-zero map"])
def test_nothing_to_measure_is_na_not_a_failed_node(tmp_path, monkeypatch, case):
    """A segmentation without cortex or white matter (or one where DiReCT's map stays 0, which antspyx raises
    on) gets a 0 map and an n/a table with a warning naming the segmentation, as a region without cortex does."""
    import warnings

    from synthsr_nipype.interfaces.segmentation import SynthSegThickness

    p = _synthseg_phantom(tmp_path, parc=False)
    lab = np.asarray(nb.load(p["dseg"]).dataobj)
    if case == "no cortex":
        lab = np.where(np.isin(lab, [3, 42]), 24, lab)  # cortex -> CSF
    elif case == "no white matter":
        lab = np.where(np.isin(lab, thickness.SYNTHSEG_DIRECT["WM"]), 24, lab)
    else:  # labels intact but a zero grey-matter posterior: DiReCT's map stays 0, which antspyx raises on
        nb.Nifti1Image(np.zeros(lab.shape, np.float32), np.eye(4)).to_filename(p["gm"])
    nb.Nifti1Image(lab.astype(np.int32), np.eye(4)).to_filename(p["dseg"])
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = SynthSegThickness(dseg=str(p["dseg"]), gm=str(p["gm"]), wm=str(p["wm"]), iterations=3).run()
    (warning,) = [w.message for w in caught if isinstance(w.message, thickness.ThicknessWarning)]
    print(warning)
    assert str(p["dseg"]) in str(warning)
    if case != "all-zero map":
        assert f"({case})" in str(warning)
    table = read_tsv(res.outputs.thickness_tsv)
    assert list(table["name"]) == ["Left-Cerebral-Cortex", "Right-Cerebral-Cortex", thickness.CORTEX_NAME][
        (case == "no cortex") * 2:] and table["thickness-mm"].isna().all()
    assert np.isnan(res.outputs.mean_thickness) and nb.load(res.outputs.thickness).get_fdata().max() == 0


def test_hemispheres_of_the_template(tmp_path, monkeypatch):
    """Left (1) is x < 0 in MNI space; an identity transform onto the template gives its own halves."""
    import ants

    monkeypatch.setenv("SYNTHSR_CACHE_DIR", str(tmp_path / "cache"))
    from synthsr_nipype.morphometry.templates import get_template

    tpl = get_template(2)
    ident = tmp_path / "identity.mat"
    ants.write_transform(ants.create_ants_transform(dimension=3), str(ident))
    out = thickness.hemisphere_regions(ident, tpl.t1w, tmp_path / "hemi.nii.gz", template_resolution=2)
    img = nb.load(out)
    lab = np.asarray(img.dataobj)
    x = nb.affines.apply_affine(img.affine, np.argwhere(lab > 0))[:, 0]
    side = lab[lab > 0]
    assert set(np.unique(lab)) == {0, 1, 2}
    assert (x[side == 1] < 0).all() and (x[side == 2] >= 0).all()
    assert abs(int((side == 1).sum()) - int((side == 2).sum())) < 0.05 * side.size


def test_interface_runs_on_the_phantom(tmp_path, monkeypatch):
    """The Nipype node: hemispheres warped onto the grid, DiReCT, map and table (identity transform)."""
    import ants

    from synthsr_nipype.interfaces.segmentation import CorticalThickness

    monkeypatch.setenv("SYNTHSR_CACHE_DIR", str(tmp_path / "cache"))
    p = _phantom(tmp_path, 3.0, "node")
    ident = tmp_path / "identity.mat"
    ants.write_transform(ants.create_ants_transform(dimension=3), str(ident))
    csf = tmp_path / "csf.nii.gz"
    nb.Nifti1Image((nb.load(p["dseg"]).get_fdata() == 1).astype(np.float32), np.eye(4)).to_filename(csf)
    node = CorticalThickness(dseg=str(p["dseg"]), probsegs=[str(csf), str(p["gm"]), str(p["wm"])],
                             from_template=str(ident), template_resolution=2)
    monkeypatch.chdir(tmp_path)
    res = node.run()
    table = read_tsv(res.outputs.thickness_tsv).set_index("name")
    assert 1.5 < res.outputs.mean_thickness < 3.5
    assert table.at["Cortex", "thickness-mm"] == pytest.approx(res.outputs.mean_thickness)
    assert nb.load(res.outputs.thickness).shape == nb.load(p["dseg"]).shape


def _synthseg_phantom(tmp_path, *, parc: bool):
    """The phantom in SynthSeg's labels: WM 2/41, cortex 3/42 (or, with ``parc``, two parcels per hemisphere:
    1028/1029 and 2028/2029 split at y = 0), a thalamus (10/49) inside the WM, CSF (24) around; the DiReCT
    posteriors (cortex; WM + deep structures) with a 1-voxel blur."""
    grid = np.indices((36, 36, 36)).astype(float) - 17.5
    r = np.sqrt((grid**2).sum(0))
    left = grid[0] < 0
    lab = np.zeros(r.shape, dtype=np.int16)
    lab[r <= WM_RADIUS + 3 + 4] = 24
    cortex = (r > WM_RADIUS) & (r <= WM_RADIUS + 3)
    if parc:
        front = grid[1] >= 0
        lab[cortex] = np.where(left, np.where(front, 1028, 1029), np.where(front, 2028, 2029))[cortex]
    else:
        lab[cortex] = np.where(left, 3, 42)[cortex]
    lab[r <= WM_RADIUS] = np.where(left, 2, 41)[r <= WM_RADIUS]
    lab[r <= 3] = np.where(left, 10, 49)[r <= 3]
    paths = {"dseg": tmp_path / f"dseg{parc}.nii.gz", "gm": tmp_path / "gm.nii.gz", "wm": tmp_path / "wm.nii.gz"}
    nb.Nifti1Image(lab, np.eye(4)).to_filename(paths["dseg"])
    nb.Nifti1Image(ndimage.gaussian_filter(cortex.astype(np.float32), 0.5), np.eye(4)).to_filename(paths["gm"])
    nb.Nifti1Image(ndimage.gaussian_filter((r <= WM_RADIUS).astype(np.float32), 0.5),
                   np.eye(4)).to_filename(paths["wm"])
    return paths


@pytest.mark.parametrize("parc", [False, True])
def test_synthseg_thickness_per_hemisphere_or_parcel(tmp_path, monkeypatch, parc):
    """SynthSeg's labels: the cortex per hemisphere (3/42), or one row per parcel present (FreeSurfer names
    from the port's tables), then the Cortex row; the thalamus counts as white matter, not as cortex."""
    from synthsr_nipype.interfaces.segmentation import SynthSegThickness

    p = _synthseg_phantom(tmp_path, parc=parc)
    monkeypatch.chdir(tmp_path)
    res = SynthSegThickness(dseg=str(p["dseg"]), gm=str(p["gm"]), wm=str(p["wm"])).run()
    table = read_tsv(res.outputs.thickness_tsv)
    print(table)
    expected = (["ctx-lh-superiorfrontal", "ctx-lh-superiorparietal", "ctx-rh-superiorfrontal",
                 "ctx-rh-superiorparietal"] if parc else ["Left-Cerebral-Cortex", "Right-Cerebral-Cortex"])
    assert list(table["name"]) == [*expected, thickness.CORTEX_NAME]
    assert list(table["index"].dropna()) == ([1028, 1029, 2028, 2029] if parc else [3, 42])
    # a 3 mm shell (docs/morphometry.md: DiReCT reads ~1 mm under the truth on a 1 mm grid)
    assert 1.5 < res.outputs.mean_thickness < 3.5, res.outputs.mean_thickness
    assert table["thickness-mm"].iloc[:-1].between(1.5, 3.5).all()
    th = nb.load(res.outputs.thickness).get_fdata()
    lab = np.asarray(nb.load(p["dseg"]).dataobj)
    cortex = np.isin(lab, [3, 42]) | (lab >= 1000)
    assert th[~cortex].max() == 0 and (th[cortex] > 0).mean() > 0.9


def test_synthseg_regions_name_the_parcels_as_the_dseg_tsv(tmp_path):
    from synthsr_nipype.morphometry.labels import cortical_parcels

    names = {lab.index: lab.name for lab in cortical_parcels()}
    lab = np.zeros((4, 4, 4), dtype=np.int16)
    lab[0, 0, :3] = [2, 3, 42]
    nb.Nifti1Image(lab, np.eye(4)).to_filename(tmp_path / "hemi.nii.gz")
    assert thickness.synthseg_regions(tmp_path / "hemi.nii.gz") == thickness.SYNTHSEG_HEMISPHERES
    lab[1, 1, :2] = [1035, 2002]
    nb.Nifti1Image(lab, np.eye(4)).to_filename(tmp_path / "parc.nii.gz")
    assert thickness.synthseg_regions(tmp_path / "parc.nii.gz") == {1035: names[1035], 2002: names[2002]}
