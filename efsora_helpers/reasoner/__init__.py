"""Chapter 2: the Visual Reasoner. Start with ``notebooks/reasoner/05_reasoner.ipynb``."""

from .prompts import STRATEGIES, PromptEngine, compact_scene, render
from .reasoner import MODES, ReasonerAnswer, VisualReasoner, check_analysis, tools_for_question
from .scene_tools import READ_ONLY_TOOLS, SceneSession, scene_tools
from .structured import (
    DirectResponse,
    ReasoningResponse,
    SafetyViolation,
    SceneAnalysis,
    StructuredResult,
    parse_as,
    structured_chat,
)
from .tools import ToolRegistry, run_tool_loop, spec_from_function

__all__ = [
    "DirectResponse", "MODES", "PromptEngine", "READ_ONLY_TOOLS", "ReasonerAnswer", "ReasoningResponse",
    "STRATEGIES", "SafetyViolation", "SceneAnalysis", "SceneSession", "StructuredResult", "ToolRegistry",
    "VisualReasoner", "check_analysis", "compact_scene", "parse_as", "render", "run_tool_loop", "scene_tools",
    "spec_from_function", "structured_chat", "tools_for_question",
]
