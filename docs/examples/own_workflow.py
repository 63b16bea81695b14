"""Embed synthsr-nipype's ``init_synthsr_wf`` in your own Nipype workflow.

Your workflow feeds a scan in, SynthSR turns it into a 1 mm MP-RAGE-like image, and your own node uses it
(here: a brain-size summary written to JSON); a DataSink collects the results.

    python own_workflow.py SCAN.nii.gz OUTPUT_DIR [--model v2|PATH] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nipype.interfaces.io import DataSink
from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from synthsr_nipype.workflows import init_synthsr_wf


def summarise(in_file: str) -> str:
    """Your own step: grid, voxel size and the volume above a crude intensity threshold."""
    import json
    import os

    import nibabel as nib
    import numpy as np

    img = nib.load(in_file)
    data = np.asarray(img.dataobj)
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000.0
    summary = {
        "shape": list(data.shape),
        "voxel_size_mm": [float(z) for z in img.header.get_zooms()[:3]],
        "above_threshold_ml": float((data > 0.2 * data.max()).sum() * voxel_ml),
    }
    out = os.path.abspath("summary.json")
    with open(out, "w") as handle:
        json.dump(summary, handle, indent=1)
    return out


def build(scan: Path, output_dir: Path, model: str, work_dir: Path) -> pe.Workflow:
    wf = pe.Workflow(name="my_study_wf", base_dir=str(work_dir))
    wf.config["execution"]["crashdump_dir"] = str(work_dir)  # crash files there, not in the current folder
    source = pe.Node(IdentityInterface(fields=["scan"]), name="source")
    source.inputs.scan = [str(scan)]  # init_synthsr_wf takes a list of channels (one for general models)

    synthsr_wf = init_synthsr_wf(model=model, omp_nthreads=1)  # the same workflow synthsr-bids runs
    summary = pe.Node(Function(input_names=["in_file"], output_names=["out_file"], function=summarise),
                      name="summary")
    sink = pe.Node(DataSink(base_directory=str(output_dir), parameterization=False), name="sink")

    wf.connect([
        (source, synthsr_wf, [("scan", "inputnode.in_files")]),
        (synthsr_wf, summary, [("outputnode.out_file", "in_file")]),
        (synthsr_wf, sink, [("outputnode.out_file", "synthsr.@image"), ("outputnode.out_json", "synthsr.@json")]),
        (summary, sink, [("out_file", "summary.@json")]),
    ])
    return wf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--model", default="v2", help="registry name or Keras .h5 path")
    parser.add_argument("--work-dir", type=Path, default=Path("work"))
    args = parser.parse_args(argv)
    build(args.scan.resolve(), args.output_dir.resolve(), args.model, args.work_dir.resolve()).run(plugin="Linear")


if __name__ == "__main__":
    main()
