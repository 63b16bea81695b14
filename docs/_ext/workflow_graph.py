"""``.. workflow::`` for Sphinx: run the block, draw its ``wf`` with Nipype and graphviz, inline the SVG.

The directive's name and options are those of ``nipype.sphinxext.plot_workflow`` (``:graph2use:``,
``:simple_form:``), so the workflow docstrings read the same; this version writes nothing next to the sources
and puts the graph into the page itself (no image files to lose).  Any failure is a Sphinx warning, which the
``-W`` build turns into an error.
"""

from __future__ import annotations

import re
import tempfile
import textwrap
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

GRAPH_KINDS = ("orig", "flat", "hierarchical", "colored", "exec")


class WorkflowGraph(SphinxDirective):
    has_content = True
    option_spec = {  # noqa: RUF012 - docutils API
        "graph2use": lambda arg: directives.choice(arg, GRAPH_KINDS),
        "simple_form": lambda arg: directives.choice(arg, ("yes", "no")),
    }

    def run(self) -> list[nodes.Node]:
        code = textwrap.dedent("\n".join(self.content))
        namespace: dict[str, object] = {}
        try:
            exec(compile(code, f"<workflow block in {self.env.docname}>", "exec"), namespace)  # noqa: S102
            workflow = namespace["wf"]
            with tempfile.TemporaryDirectory() as scratch:
                workflow.base_dir = scratch
                written = workflow.write_graph(
                    graph2use=self.options.get("graph2use", "hierarchical"), format="svg",
                    simple_form=self.options.get("simple_form", "yes") == "yes", dotfilename="graph.dot")
                svg = Path(written).read_text()
        except Exception as exc:  # noqa: BLE001 - any failure of the user's block becomes a build warning
            raise self.error(f"workflow graph failed: {type(exc).__name__}: {exc}") from None
        svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE: the SVG goes inline
        svg = re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg style="max-width:100%;height:auto"', svg, count=1)
        return [nodes.raw("", f'<div class="workflow-graph">{svg}</div>', format="html")]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("workflow", WorkflowGraph)
    return {"parallel_read_safe": True, "version": "1"}
