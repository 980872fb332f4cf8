"""Moved: the typed tool registry and the tool loop are generic and live in
:mod:`efsora_helpers.llm.tools`; this module re-exports them so older imports keep working.
The warehouse tools are in :mod:`efsora_helpers.reasoner.scene_tools`. Taught in
``notebooks/reasoner/03_tools.ipynb``.
"""

from ..llm.tools import Tool, ToolLoopResult, ToolRegistry, ToolResult, ToolStep, run_tool_loop, spec_from_function

__all__ = ["Tool", "ToolLoopResult", "ToolRegistry", "ToolResult", "ToolStep", "run_tool_loop", "spec_from_function"]
