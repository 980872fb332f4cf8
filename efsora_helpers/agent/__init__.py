"""Chapter 3: the multi-modal warehouse agent (LangGraph), its tools, memory, human approval, MCP and
voice. Start with ``notebooks/agent/01_graph.ipynb``.

The stable entry point other chapters call is :func:`run_agent` (in :mod:`.graph`); it is
imported lazily so that ``import efsora_helpers.agent`` stays cheap.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name in {"run_agent", "build_agent", "AgentResult"}:
        from . import graph

        return getattr(graph, name)
    raise AttributeError(name)


__all__ = ["AgentResult", "build_agent", "run_agent"]
