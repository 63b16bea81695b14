"""Settings: built once from the parsed arguments, normalised by one set of rules, frozen."""

from __future__ import annotations

import dataclasses
import json

import pytest

from synthsr_nipype.cli.bids_parser import get_parser
from synthsr_nipype.cli.bids_settings import settings_from_args
from synthsr_nipype.settings import MorphometryOptions, Settings
from tests.paths import SHARED, TINY


def test_arguments_become_frozen_settings_without_touching_args(tmp_path, monkeypatch):
    monkeypatch.chdir(TINY.parent)
    args = get_parser().parse_args([str(SHARED), "out", "participant", "--model", TINY.name,
                                    "--nprocs", "4", "--seg-backend", "none", "--tbm",
                                    "--disable-flipping", "--dry-run"])
    before = dict(vars(args))
    settings = settings_from_args(args)
    assert vars(args) == before  # the arguments are not rewritten
    assert settings.synthsr.model == str(TINY.resolve())  # a file: its absolute path
    assert settings.synthsr.flip is False and settings.synthsr.omp_nthreads == 3
    assert settings.run.output_dir == TINY.parent / "out" and settings.run.model_given
    assert settings.morphometry.seg_backend == "ants"  # --tbm alone implies ants
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.synthsr.model = "v2"
    recorded = json.loads(settings.to_json())
    assert recorded["synthsr"]["model"] == str(TINY.resolve())
    assert recorded["morphometry"]["seg_backend"] == "ants"


def test_backend_rules_are_coded_once():
    assert MorphometryOptions(seg_backend="none").seg_backend is None
    assert not MorphometryOptions().enabled
    assert MorphometryOptions(seg_backend="synthseg", tbm=True).seg_backend == "synthseg"
    kwargs = MorphometryOptions(tbm=True, template_resolution=2).workflow_kwargs()
    assert kwargs["seg_backend"] == "ants" and kwargs["template_resolution"] == 2
    group = settings_from_args(get_parser().parse_args([str(SHARED), "o", "group", "--tbm"]))
    assert isinstance(group, Settings) and group.morphometry.seg_backend is None
    assert not group.run.model_given and group.synthsr.model == "v2"
