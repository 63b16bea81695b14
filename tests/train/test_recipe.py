"""train/configs/synthsr.yaml: SynthSR's recipe (docs/training.md compares it point by point)."""

from __future__ import annotations

import pytest

from synthsr_nipype.synth import GeneratorConfig
from synthsr_nipype.synth.contrast import GaussianMixture
from synthsr_nipype.synth.labels import ClassTable
from synthsr_nipype.train.config import expand_label_maps, load_config
from tests.paths import LABELS, REPO

CONFIG = REPO / "synthsr_nipype" / "train" / "configs" / "synthsr.yaml"
pytestmark = pytest.mark.skipif(not (LABELS / "synthseg").is_dir(), reason="shared label maps not available")


def test_the_recipe_is_the_papers_where_the_data_allows(monkeypatch):
    monkeypatch.chdir(REPO)  # committed configs name ../shared from the repository root
    config = load_config(CONFIG)
    assert (config.network.n_levels, config.network.base_features, config.network.convs_per_level) == (5, 24, 2)
    assert (config.loss, config.learning_rate, config.steps, config.batch_size) == ("l1", 1e-4, 100_000, 1)
    generator = GeneratorConfig.from_dict(config.generator)
    assert generator.crop == (160, 160, 160) and generator.crop_padding > 0
    target = generator.target
    assert (target.clip, target.normalise, target.gamma_std, target.blur_sigma) == (300, True, 0.5, 0.5)
    spatial = generator.spatial
    assert (spatial.scaling, spatial.rotation_deg, spatial.shearing, spatial.nonlin_std_mm) == (0.15, 15, 0.02, 4)
    # every map exists, head maps among them, and the tables fit the target's prior
    maps = expand_label_maps(config.label_maps) + expand_label_maps(config.validation_label_maps)
    assert any("synthseg" in str(p) for p in maps)
    table = ClassTable.from_folder(generator.tables, target.classes)
    GaussianMixture(table, target.contrast, generator.tables)  # raises on a table / prior mismatch


def test_the_lite_candidate_config_loads_and_starts_from_lite(monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_config(REPO / "synthsr_nipype" / "train" / "configs" / "lite-candidate.yaml")
    assert (REPO / config.initial_weights).is_file()
    GeneratorConfig.from_dict(config.generator)
