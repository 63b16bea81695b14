"""The BIDS query and plan as an interface, for authors of other Nipype graphs."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..bids.query import DEFAULT_SUFFIXES


class _BIDSPlanInputSpec(BaseInterfaceInputSpec):
    bids_dir = Directory(exists=True, mandatory=True, desc="BIDS dataset root")
    suffixes = traits.List(traits.Str, list(DEFAULT_SUFFIXES), usedefault=True)
    participant_label = traits.List(traits.Str, desc="subjects (with or without sub-)")
    session_label = traits.List(traits.Str, desc="sessions (with or without ses-)")
    bids_filter_file = File(exists=True, desc="nipreps-style JSON filter file")
    model = traits.Str("v2", usedefault=True)
    general_model = traits.Str("v2", usedefault=True)
    model_channels = traits.Int(1, usedefault=True, desc="input channels of the model")
    validate = traits.Bool(True, usedefault=True, desc="let pybids validate file names")
    database_dir = Directory(desc="pybids database folder (reused between runs; --bids-database-dir)")


class _BIDSPlanOutputSpec(TraitedSpec):
    plan_json = File(exists=True, desc="the plan as JSON")
    plan_txt = File(exists=True, desc="the plan as text (as --dry-run prints it)")
    groups = traits.List(traits.Dict, desc="one dict per group (jobs, reference, skipped)")


class BIDSPlan(SimpleInterface):
    """Query, describe and group a dataset's anatomical scans: the selection and the plan of
    ``synthsr-bids`` (:func:`synthsr_nipype.bids.query.select_scans`, :func:`~synthsr_nipype.bids.plan.build_plan`)."""

    input_spec = _BIDSPlanInputSpec
    output_spec = _BIDSPlanOutputSpec

    def _run_interface(self, runtime):
        from ..atomic import atomic_write_bytes, atomic_write_json
        from ..bids.plan import build_plan, format_plan
        from ..bids.query import select_scans

        selected = select_scans(self.inputs.bids_dir, suffixes=self.inputs.suffixes,
                                participant_label=self.inputs.participant_label or None,
                                session_label=self.inputs.session_label or None,
                                bids_filter_file=self.inputs.bids_filter_file or None,
                                database_dir=self.inputs.database_dir or None, validate=self.inputs.validate)
        plan = build_plan(
            selected.files,
            bids_dir=self.inputs.bids_dir,
            model=self.inputs.model,
            general_model=self.inputs.general_model,
            in_channels=self.inputs.model_channels,
            reference_filter=selected.filters.get("reference"),
            unindexed=selected.unindexed,
        )
        cwd = Path(runtime.cwd)
        atomic_write_json(cwd / "plan.json", plan.to_dict())
        atomic_write_bytes(cwd / "plan.txt", (format_plan(plan) + "\n").encode())
        self._results.update(
            plan_json=str(cwd / "plan.json"),
            plan_txt=str(cwd / "plan.txt"),
            groups=plan.to_dict()["groups"],
        )
        return runtime
