"""Chapter 2: the Visual Reasoner. Start with ``notebooks/reasoner/05_reasoner.ipynb``."""

# The generic LLM pieces live in efsora_helpers.llm; re-exported so chapter 2's imports keep working.
from ..llm.structured import StructuredResult, parse_as, structured_chat
from ..llm.tools import ToolRegistry, run_tool_loop, spec_from_function
from .prompts import STRATEGIES, PromptEngine, compact_scene, render
from .reasoner import MODES, ReasonerAnswer, VisualReasoner, check_analysis, tools_for_question
from .scene_tools import READ_ONLY_TOOLS, SceneSession, scene_tools
from .structured import DirectResponse, ReasoningResponse, SafetyViolation, SceneAnalysis

__all__ = [
    "DirectResponse", "MODES", "PromptEngine", "READ_ONLY_TOOLS", "ReasonerAnswer", "ReasoningResponse",
    "STRATEGIES", "SafetyViolation", "SceneAnalysis", "SceneSession", "StructuredResult", "ToolRegistry",
    "VisualReasoner", "check_analysis", "compact_scene", "parse_as", "render", "run_tool_loop", "scene_tools",
    "spec_from_function", "structured_chat", "tools_for_question",
]
