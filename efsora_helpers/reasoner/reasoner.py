"""``VisualReasoner``: chapter 1's perception plus an LLM, with history, modes and strategies.

    reasoner = VisualReasoner()                       # the local model unless a provider is chosen
    reasoner.analyze("warehouse.jpg", question="Is there a safety violation in this warehouse?")
    reasoner.analyze("warehouse.jpg", question="Which worker?")      # follow-up: same scene, history kept

Modes: ``standard`` (scene facts in the prompt, a structured answer), ``tools`` (the model looks the
facts up with tools), ``safety`` (a ``SceneAnalysis`` with violations, checked against the facts),
``compare`` (the same question to several clients and strategies; a multimodal client also gets the
raw image without the CV JSON) and ``interactive`` (a REPL). Taught in
``notebooks/reasoner/05_reasoner.ipynb``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from ..llm.client import LLMClient
from ..llm.structured import parse_as, schema_of, structured_chat
from ..llm.tools import ToolStep, run_tool_loop
from ..llm.types import Message, Usage, assistant, user
from ..perception.engine import IMAGE_SUFFIXES
from ..perception.schema import PerceptionResult, load_result
from ..vocabulary import Rule, Zone
from .prompts import STRATEGIES, PromptEngine
from .scene_tools import SceneSession, scene_tools
from .structured import DirectResponse, ReasoningResponse, SceneAnalysis, grounded_analysis_schema

MODES = ("standard", "tools", "safety", "compare", "interactive")

# Which tools a question can need, by its words: the defended reasoner offers only these.
TOOL_INTENTS = {
    "count_objects": r"how many|count|number of|any\b|are there|is there",
    "check_ppe": r"hard ?hat|helmet|vest|ppe|protective|safety|violation|wear",
    "objects_in_zone": r"zone|lane|forklift area|aisle",
    "read_text_near": r"sign|text|say|says|written|read|label",
}


def tools_for_question(question: str) -> list[str]:
    q = question.lower()
    chosen = [name for name, pattern in TOOL_INTENTS.items() if re.search(pattern, q)]
    return chosen or ["count_objects", "check_ppe"]


@dataclass
class ReasonerAnswer:
    question: str
    answer: str
    mode: str
    strategy: str
    provider: str
    structured: BaseModel | None = None
    valid: bool = True  # the structured answer parsed and validated
    repaired: bool = False
    tool_steps: list[ToolStep] = field(default_factory=list)
    tool_rounds: int = 0  # model turns that asked for tools (tools mode)
    allowed_tools: list[str] | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # output checks that failed

    @property
    def number(self) -> int | None:
        value = getattr(self.structured, "number", None)
        if value is not None:
            return value
        match = re.search(r"\b(\d+)\b", self.answer)
        return int(match.group(1)) if match else None

    def row(self) -> dict[str, Any]:
        return {"provider": self.provider, "mode": self.mode, "strategy": self.strategy, "question": self.question,
                "answer": self.answer, "number": self.number, "valid": self.valid, "repaired": self.repaired,
                "tool_calls": [s.call.name for s in self.tool_steps], "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens, "cost_usd": self.cost_usd,
                "latency_s": round(self.latency_s, 3)}


class VisualReasoner:
    def __init__(self, client: LLMClient | None = None, *, engine_factory: Callable | None = None,
                 token_budget: int = 1200, defended: bool = True, sandbox: str | Path | None = None,
                 max_tool_steps: int = 3, max_tokens: int = 200):
        self.client = client or LLMClient()
        self.prompts = PromptEngine(self.client.count_tokens, token_budget=token_budget, defended=defended)
        self.defended = defended
        self.session = SceneSession(sandbox=sandbox, engine_factory=engine_factory)
        self.registry = scene_tools(self.session)
        self.max_tool_steps = max_tool_steps
        self.max_tokens = max_tokens
        self.history: list[Message] = []
        self._scene_key: str | None = None

    # ---- scenes -------------------------------------------------------------------------------
    def load_scene(self, source: str | Path | PerceptionResult | dict) -> PerceptionResult:
        """A ``PerceptionResult`` from an image (runs the engine), a CV JSON file, a dict or itself.
        A new scene clears the conversation history."""
        if isinstance(source, PerceptionResult):
            result, key = source, f"obj:{source.image_path}:{id(source)}"
        elif isinstance(source, dict):
            result = PerceptionResult.model_validate(source)
            key = f"dict:{result.image_path}"
        else:
            path = Path(source)
            if not path.exists():
                raise FileNotFoundError(f"no such file: {path} (give an image or a chapter 1 JSON result)")
            if path.suffix.lower() == ".json":
                result = load_result(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                result = self.session.engine().perceive(path)
            else:
                raise ValueError(f"{path.name}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a .json result")
            key = f"path:{path.resolve()}"
        if key != self._scene_key:
            self.reset()
            self._scene_key = key
        self.session.result = result
        return result

    def reset(self) -> None:
        self.history = []
        self._scene_key = None

    # ---- the one entry point ------------------------------------------------------------------
    def analyze(self, image_or_cv_json, question: str, mode: str = "standard", strategy: str = "direct",
                **kwargs: Any):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
        scene = self.load_scene(image_or_cv_json)
        if mode == "compare":
            return self.compare(scene, question, image=image_or_cv_json, **kwargs)
        if mode == "interactive":
            return self.interactive(scene, strategy=strategy, first_question=question, **kwargs)
        handler = {"standard": self._standard, "tools": self._tools, "safety": self._safety}[mode]
        t0 = time.perf_counter()
        calls_before = len(self.client.calls)
        follow_up = bool(self.history)
        answer, opening = handler(scene, question, strategy)
        answer.latency_s = time.perf_counter() - t0
        calls = self.client.calls[calls_before:]
        answer.usage = sum((c.usage for c in calls), Usage())
        costs = [c.cost_usd for c in calls if c.cost_usd is not None]
        answer.cost_usd = sum(costs) if costs else None
        if follow_up:
            self.history += [user(question), assistant(answer.answer)]
        else:  # the opening turn as sent, scene facts included: follow-ups state them once
            self.history = [opening, assistant(answer.answer)]
        return answer

    # Each mode returns its answer and the user message it sent (the opening turn of a conversation).
    def _standard(self, scene, question, strategy) -> tuple[ReasonerAnswer, Message]:
        built = self.prompts.build(scene, question, strategy, history=self.history)
        shape = ReasoningResponse if strategy == "cot" else DirectResponse
        # The reasoning field comes first and can take 200 characters: give cot room to close.
        tokens = max(self.max_tokens, 320) if strategy == "cot" else self.max_tokens
        result = structured_chat(self.client, built.messages, shape, max_tokens=tokens)
        text = result.value.answer if result.ok else (result.attempts[-1].text if result.attempts else "")
        return ReasonerAnswer(question, text, "standard", strategy, self.client.label, structured=result.value,
                              valid=result.ok, repaired=result.repaired, prompt_tokens=built.total_tokens,
                              dropped=built.dropped), built.messages[-1]

    def _tools(self, scene, question, strategy) -> tuple[ReasonerAnswer, Message]:
        allowed = tools_for_question(question) if self.defended else None
        signs = self.prompts.sign_text(scene)  # the sign text is part of the scene
        messages = [self.prompts.system_message(strategy),
                    user("Use the tools to look up facts about the current warehouse scene, then answer.\n"
                         + (signs + "\n" if signs else "") + "Question: " + question)]
        loop = run_tool_loop(self.client, messages, self.registry, max_steps=self.max_tool_steps,
                             allowed=allowed, final_schema=schema_of(DirectResponse), max_tokens=self.max_tokens)
        value, _ = parse_as(DirectResponse, loop.answer)
        text = value.answer if value is not None else loop.answer
        return ReasonerAnswer(question, text, "tools", strategy, self.client.label, structured=value,
                              tool_steps=loop.steps, tool_rounds=loop.tool_rounds, allowed_tools=allowed,
                              valid=value is not None), messages[-1]

    def _safety(self, scene, question, strategy) -> tuple[ReasonerAnswer, Message]:
        built = self.prompts.build(scene, question or "List every safety violation.", strategy, history=self.history)
        worker_ids = [w.object_id for w in scene.safety.workers] if scene.safety else []
        result = structured_chat(self.client, built.messages, SceneAnalysis, schema=grounded_analysis_schema(worker_ids),
                                 max_tokens=max(self.max_tokens, 480))
        answer = ReasonerAnswer(question, "", "safety", strategy, self.client.label, structured=result.value,
                                valid=result.ok, repaired=result.repaired, prompt_tokens=built.total_tokens,
                                dropped=built.dropped)
        if result.ok:
            answer.warnings = check_analysis(result.value, scene)
            answer.answer = result.value.summary
        return answer, built.messages[-1]

    # ---- compare and interactive ----------------------------------------------------------------
    def compare(self, scene: PerceptionResult, question: str, clients: list[LLMClient] | None = None,
                strategies: tuple[str, ...] = STRATEGIES, image=None) -> list[ReasonerAnswer]:
        """The same question to each client × strategy, each from a fresh history. A client whose
        model takes images also answers from the raw image alone (no CV JSON)."""
        from ..llm.catalog import model_info

        answers = []
        image_path = _image_of(image, scene)
        for client in clients or [self.client]:
            other = VisualReasoner(client, token_budget=self.prompts.token_budget, defended=self.defended,
                                   max_tokens=self.max_tokens)
            for strategy in strategies:
                answers.append(other.analyze(scene, question, mode="standard", strategy=strategy))
            if model_info(client.provider_name, client.model).vision and image_path and image_path.is_file():
                t0 = time.perf_counter()
                reply = client.chat([self.prompts.system_message("direct"), user("Question: " + question,
                                                                                  images=[image_path])],
                                    max_tokens=self.max_tokens)
                answers.append(ReasonerAnswer(question, reply.text, "compare", "raw_image", client.label,
                                              usage=reply.usage, cost_usd=reply.cost_usd,
                                              latency_s=time.perf_counter() - t0))
        return answers

    def interactive(self, scene: PerceptionResult, strategy: str = "direct", first_question: str | None = None,
                    input_fn: Callable[[str], str] = input,
                    output: Callable[[str], None] = print) -> list[ReasonerAnswer]:
        """A question-and-answer loop on one scene, one conversation: ``first_question`` (if any) is
        answered first, then each line read; an empty line, ``quit`` or end of input stops."""
        answers = []
        output(scene.scene_description or "scene loaded")
        question = (first_question or "").strip()
        while True:
            if not question:
                try:
                    question = input_fn("question> ").strip()
                except EOFError:
                    break
                if question.lower() in ("", "quit", "exit"):
                    break
            answers.append(self.analyze(scene, question, mode="standard", strategy=strategy))
            output(answers[-1].answer)
            question = ""
        return answers


def _image_of(source, scene: PerceptionResult) -> Path | None:
    """The image behind a scene: the path given if it is an image, else the scene's own
    ``image_path`` (relative paths are taken from the repository root)."""
    from ..paths import repo_root

    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in IMAGE_SUFFIXES:
        return Path(source)
    if scene.image_path:
        path = Path(scene.image_path)
        return path if path.is_absolute() else repo_root() / path
    return None


def check_analysis(analysis: SceneAnalysis, scene: PerceptionResult) -> list[str]:
    """Output validation: what the model claims must agree with the facts it was given."""
    warnings = []
    workers = {w.object_id: w for w in (scene.safety.workers if scene.safety else [])}
    if analysis.worker_count != len(workers):
        warnings.append(f"worker_count {analysis.worker_count} but the scene has {len(workers)} workers")
    seen = set()
    for v in analysis.violations:
        if (v.worker_id, v.rule) in seen:
            warnings.append(f"violation {v.rule} for worker {v.worker_id} is listed twice")
            continue
        seen.add((v.worker_id, v.rule))
        if v.worker_id is not None and v.worker_id not in workers:
            warnings.append(f"violation names worker {v.worker_id}, who is not in the scene")
            continue
        w = workers.get(v.worker_id)
        if w is not None and ((v.rule == Rule.NO_HARD_HAT and w.hard_hat) or (v.rule == Rule.NO_VEST and w.vest)
                              or (v.rule == Rule.IN_FORKLIFT_ZONE and Zone.FORKLIFT_ZONE not in w.zones)):
            warnings.append(f"violation {v.rule} for worker {v.worker_id} contradicts the facts")
    return warnings
