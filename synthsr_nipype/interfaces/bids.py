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


class _BIDSPlanOutputSpec(TraitedSpec):
    plan_json = File(exists=True, desc="the plan as JSON")
    plan_txt = File(exists=True, desc="the plan as text (as --dry-run prints it)")
    groups = traits.List(traits.Dict, desc="one dict per group (jobs, reference, skipped)")


class BIDSPlan(SimpleInterface):
    """Query, describe and group a dataset's anatomical scans (:mod:`synthsr_nipype.bids`)."""

    input_spec = _BIDSPlanInputSpec
    output_spec = _BIDSPlanOutputSpec

    def _run_interface(self, runtime):
        from ..atomic import atomic_write_bytes, atomic_write_json
        from ..bids.labels import normalize_labels
        from ..bids.plan import build_plan, format_plan
        from ..bids.query import build_layout, collect_anat, load_bids_filters

        filters = load_bids_filters(self.inputs.bids_filter_file or None)
        layout = build_layout(self.inputs.bids_dir, validate=self.inputs.validate)
        files = collect_anat(
            layout,
            suffixes=self.inputs.suffixes,
            participant_labels=normalize_labels(self.inputs.participant_label or None, "sub"),
            session_labels=normalize_labels(self.inputs.session_label or None, "ses"),
            bids_filters=filters,
        )
        plan = build_plan(
            files,
            bids_dir=self.inputs.bids_dir,
            model=self.inputs.model,
            general_model=self.inputs.general_model,
            in_channels=self.inputs.model_channels,
            reference_filter=filters.get("reference"),
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
