"""Settings: built once from the parsed arguments, normalised by one set of rules, frozen."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json

import pytest

from synthsr_nipype.cli.bids_parser import get_parser
from synthsr_nipype.cli.bids_settings import settings_from_args
from synthsr_nipype.settings import MorphometryOptions, RunOptions, Settings, SynthSROptions
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
    assert settings.synthsr.flip is False and settings.run.omp_nthreads == 3  # min(nprocs - 1, 8)
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
    options = MorphometryOptions(tbm=True, template_resolution=2)
    assert options.seg_backend == "ants" and options.template_resolution == 2
    group = settings_from_args(get_parser().parse_args([str(SHARED), "o", "group", "--tbm"]))
    assert isinstance(group, Settings) and group.morphometry.seg_backend is None
    assert not group.run.model_given and group.synthsr.model == "v2"


@pytest.mark.parametrize("level", ["participant", "group"])
def test_settings_json_round_trip_equals(tmp_path, level):
    """What logs/<run>/settings.json records reads back as the same frozen settings (--reports-only, a rerun)."""
    filters = tmp_path / "filters.json"
    filters.write_text("{}")
    args = get_parser().parse_args([
        str(SHARED), str(tmp_path / "out"), level, "--model", str(TINY), "--participant-label", "01", "02",
        "--session-label", "pre", "--bids-filter-file", str(filters), "--bids-database-dir", str(tmp_path / "db"),
        "--seg-backend", "ants", "--tbm", "--template-resolution", "2", "--nprocs", "3", "--mem-gb", "2.5",
        "--output-space", "native", "-vv"])
    settings = settings_from_args(args)
    text = settings.to_json()
    back = Settings.from_json(text)
    print(f"{level}: {len(text)} characters of JSON, {len(json.loads(text)['run'])} run fields")
    assert back == settings and back.to_json() == text
    assert isinstance(back.run.bids_dir, type(settings.run.bids_dir)) and back.run.participant_label == ("01", "02")
    assert back.run.mem_gb == 2.5 and back.morphometry.seg_backend == "ants"
    # a file from another version: unknown keys are left out, missing ones take their defaults
    data = json.loads(text)
    data["synthsr"]["omp_nthreads"] = 4  # where an older version kept it
    del data["morphometry"]["thickness"]
    older = Settings.from_json(json.dumps(data))
    assert older.synthsr == settings.synthsr and older.morphometry.thickness is False


def test_every_settings_field_is_documented():
    """fMRIPrep's config: each field has its docstring right below it."""
    undocumented = []
    for cls in (SynthSROptions, MorphometryOptions, RunOptions, Settings):
        body = ast.parse(inspect.getsource(cls)).body[0].body
        for node, after in zip(body, body[1:] + [None]):
            if isinstance(node, ast.AnnAssign):
                documented = (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                              and isinstance(after.value.value, str) and after.value.value.strip())
                if not documented:
                    undocumented.append(f"{cls.__name__}.{node.target.id}")
    fields = sum(len(dataclasses.fields(cls)) for cls in (SynthSROptions, MorphometryOptions, RunOptions, Settings))
    print(f"{fields} fields, undocumented: {undocumented}")
    assert fields > 30 and not undocumented


def test_one_omp_nthreads():
    """--omp-nthreads has one home: RunOptions (SynthSR and the morphometry read it from there)."""
    homes = [cls.__name__ for cls in (SynthSROptions, MorphometryOptions, RunOptions)
             if "omp_nthreads" in {f.name for f in dataclasses.fields(cls)}]
    assert homes == ["RunOptions"]
