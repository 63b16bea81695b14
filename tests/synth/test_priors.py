"""synthsr-estimate-priors recovers the class statistics of images made by the generator's mixture."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from synthsr_nipype.cli.priors import main
from synthsr_nipype.synth import ClassTable, GaussianMixture
from synthsr_nipype.synth.random import sample_generator
from tests.paths import SHARED

TABLES = SHARED / "data" / "labels" / "synthsr"
pytestmark = pytest.mark.skipif(not TABLES.is_dir(), reason=f"shared label tables not available: {TABLES}")


def _images(tmp_path, n: int):
    """``n`` images drawn from the t2 prior on one label map, with the class parameters each was drawn with."""
    table = ClassTable.from_folder(TABLES)
    mixture = GaussianMixture(table, "t2", TABLES)
    source = nib.load(str(TABLES / "brain1_labels.nii.gz"))
    labels = np.rint(np.asarray(source.dataobj)).astype(np.int64)
    classes = table.lookup(int(labels.max()))[torch.from_numpy(labels)]
    paths, drawn = [], []
    for i in range(n):
        rng = sample_generator(100 + i, 0)
        params = mixture.sample(rng)
        image = mixture.apply(classes, params, rng).numpy()
        path = tmp_path / f"t2_{i}.nii.gz"
        nib.save(nib.Nifti1Image(image, source.affine), str(path))
        paths.append(path)
        drawn.append(params)
    return table, paths, drawn, classes.numpy()


def test_known_class_means_and_stds_are_recovered(tmp_path):
    table, paths, drawn, classes = _images(tmp_path, 3)
    labels = [str(TABLES / "brain1_labels.nii.gz")] * 3
    out = tmp_path / "priors"
    assert main(["--images", *map(str, paths), "--labels", *labels, "--tables", str(TABLES),
                 "--contrast", "mine", "--out", str(out), "--no-rescale"]) == 0
    means, stds = np.load(out / "prior_means_mine.npy"), np.load(out / "prior_stds_mine.npy")
    assert means.shape == stds.shape == (2, table.n_classes)
    true_means = np.array([d["means"] for d in drawn])
    true_stds = np.array([d["stds"] for d in drawn])
    counts = np.bincount(classes.ravel(), minlength=table.n_classes)
    worst = 0.0
    for k in range(1, table.n_classes):
        if counts[k] < 500 or true_means[:, k].min() < 4 * true_stds[:, k].max():
            continue  # tiny or near-zero classes (clamped at 0) are not identifiable from their median
        error = 4 * true_stds[:, k].max() / np.sqrt(counts[k]) * 1.26 + 1e-3  # median's sampling error
        assert abs(means[0, k] - true_means[:, k].mean()) < error
        assert abs(stds[0, k] - true_stds[:, k].mean()) < 0.1 * true_stds[:, k].mean() + 1e-3
        assert means[1, k] == pytest.approx(true_means[:, k].std(), abs=error)
        worst = max(worst, abs(means[0, k] - true_means[:, k].mean()))
    print(f"largest class-mean error {worst:.3f} (intensity units)")
    assert means[0, 0] == 0 and stds[0, 0] == 0


def test_rescaled_tables_are_on_the_0_255_scale(tmp_path):
    table, paths, _, _ = _images(tmp_path, 1)
    out = tmp_path / "priors"
    assert main(["--images", str(paths[0]), "--labels", str(TABLES / "brain1_labels.nii.gz"), "--tables",
                 str(TABLES), "--contrast", "t2x", "--out", str(out)]) == 0
    means = np.load(out / "prior_means_t2x.npy")
    assert 0 <= means[0].min() and means[0].max() <= 255
    assert np.all(means[1] == 0)  # one image: no spread across images


def test_mismatched_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["--images", "a.nii.gz", "b.nii.gz", "--labels", "a.nii.gz", "--tables", str(TABLES),
                 "--contrast", "x", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ERROR: give one label map per image") and "\n" not in err
    assert main(["--images", str(tmp_path / "missing.nii.gz"), "--labels", str(tmp_path / "l.nii.gz"),
                 "--tables", str(TABLES), "--contrast", "x", "--out", str(tmp_path)]) == 1
    assert "missing.nii.gz" in capsys.readouterr().err
