"""Every ``.. workflow::`` block in a workflow docstring builds the ``wf`` it shows (the docs
draw these graphs; a block that no longer runs would otherwise only fail the Sphinx build)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import textwrap

import pytest
from nipype.pipeline import engine as pe

import synthsr_nipype.workflows as workflows


def workflow_blocks() -> list[tuple[str, str]]:
    """(function, code) of each ``.. workflow::`` block: its indented lines after the options."""
    blocks = []
    for info in pkgutil.iter_modules(workflows.__path__):
        module = importlib.import_module(f"{workflows.__name__}.{info.name}")
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if func.__module__ != module.__name__ or ".. workflow::" not in (func.__doc__ or ""):
                continue
            lines = inspect.cleandoc(func.__doc__).splitlines()
            start = next(i for i, ln in enumerate(lines) if ln.strip() == ".. workflow::")
            indent = len(lines[start]) - len(lines[start].lstrip()) + 4
            body = []
            for line in lines[start + 1:]:
                if line.strip() and len(line) - len(line.lstrip()) < indent:
                    break
                body.append(line)
            code = textwrap.dedent("\n".join(ln for ln in body if not ln.strip().startswith(":")))
            blocks.append((f"{module.__name__}.{name}", code))
    return blocks


BLOCKS = workflow_blocks()


def test_every_workflow_factory_has_a_block():
    names = {name.rsplit(".", 1)[1] for name, _ in BLOCKS}
    assert {"init_synthsr_wf", "init_single_subject_wf", "init_synthsr_bids_wf",
            "init_morphometry_wf", "init_ds_anat_wf", "init_ds_morphometry_wf"} <= names


@pytest.mark.parametrize("name,code", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_workflow_block_builds_its_wf(name, code):
    namespace: dict[str, object] = {}
    exec(compile(code, f"<workflow block of {name}>", "exec"), namespace)  # noqa: S102
    wf = namespace["wf"]
    assert isinstance(wf, pe.Workflow) and wf.list_node_names(), name
