"""The evaluation set: questions over SafetyScenes images whose answers come from the generator's
ground truth, and a scorer that needs no judge model.

The reasoner never sees the ground truth. It sees what chapter 1's engine perceived (the CV JSON
files in ``data/reasoner/eval_cv/``, produced by :func:`write_eval_data`), so an answer can be
wrong because the detector missed something or because the LLM misread the facts. The
``cv_ceiling`` column separates the two: it answers each question straight from the CV JSON with
the warehouse rules, no LLM. :func:`evaluate` returns one :class:`EvalAnswer` per question;
``answer.row()`` is its table row. Taught in ``notebooks/reasoner/05_reasoner.ipynb``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..llm import errors
from ..llm.types import Usage
from ..paths import repo_root
from ..perception.examples import scene_ground_truth
from ..perception.schema import PerceptionResult, load_result
from ..vocabulary import Count, ObjectClass, Rule, Zone

EVAL_SCENES = ("test_0002", "test_0004", "test_0005", "test_0009", "test_0013", "test_0015", "test_0018",
               "test_0030", "test_0040", "test_0054")

# (question id, question, kind, how to read the truth from the ground truth file)
TEMPLATES: tuple[tuple[str, str, str, Callable[[dict], Any]], ...] = (
    ("people", "How many people are in the scene?", "count", lambda g: g["counts"][ObjectClass.PERSON]),
    (Rule.NO_HARD_HAT, "How many workers are not wearing a hard hat?", "count",
     lambda g: g["counts"][Count.WORKERS_WITHOUT_HARD_HAT]),
    (Rule.NO_VEST, "How many workers are not wearing a safety vest?", "count",
     lambda g: g["counts"][Count.WORKERS_WITHOUT_VEST]),
    ("in_zone", "How many workers are inside the forklift zone?", "count",
     lambda g: g["counts"].get(Count.WORKERS_IN_FORKLIFT_ZONE, 0)),
    ("forklifts", "How many forklifts are in the scene?", "count", lambda g: g["counts"][ObjectClass.FORKLIFT]),
    ("any_no_hat", "Is any worker missing a hard hat? Answer yes or no.", "yesno",
     lambda g: g["counts"][Count.WORKERS_WITHOUT_HARD_HAT] > 0),
    ("sign_text", "What does the sign say?", "text", lambda g: [t["text"] for t in g["text_regions"]]),
)


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    scene: str
    question: str
    kind: str  # count | yesno | text
    truth: Any  # int, bool, or the list of sign texts (any one counts)

    @property
    def cv_path(self) -> Path:
        return eval_cv_path(self.scene)


def eval_dir() -> Path:
    return repo_root() / "data" / "reasoner"


def eval_cv_path(scene: str) -> Path:
    """What chapter 1's engine perceived in one evaluation scene (written by :func:`write_eval_data`)."""
    return eval_dir() / "eval_cv" / f"{scene}.json"


def build_eval_set(scenes: Iterable[str] = EVAL_SCENES) -> list[EvalQuestion]:
    out = []
    for scene in scenes:
        g = scene_ground_truth(scene)
        for qid, question, kind, truth in TEMPLATES:
            value = truth(g)
            if kind == "text" and not value:
                continue  # no sign in this scene
            out.append(EvalQuestion(f"{scene}:{qid}", scene, question, kind, value))
    return out


def load_eval_set() -> list[EvalQuestion]:
    data = json.loads((eval_dir() / "questions.json").read_text())
    return [EvalQuestion(**q) for q in data["questions"]]


def write_eval_data(scenes: Iterable[str] = EVAL_SCENES) -> list[Path]:
    """Run chapter 1's engine on the scenes (with their forklift lanes) and write the CV JSON and the
    question file. Deterministic on CPU; takes ~30 s with OCR."""
    from ..perception.engine import PerceptionEngine
    from ..perception.examples import perceive_scene

    scenes = list(scenes)
    (eval_dir() / "eval_cv").mkdir(parents=True, exist_ok=True)
    engine = PerceptionEngine()
    written = []
    for scene in scenes:
        result = perceive_scene(engine, scene)
        path = eval_cv_path(scene)
        path.write_text(result.model_dump_json(indent=1) + "\n")
        written.append(path)
    questions = [asdict(q) for q in build_eval_set(scenes)]
    (eval_dir() / "questions.json").write_text(json.dumps(
        {"source": "SafetyScenes test split ground truth (data/safetyscenes/ground_truth/test)",
         "questions": questions}, indent=1) + "\n")
    return written


# ---- scoring -------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def score(question: EvalQuestion, answer_text: str, number: int | None) -> bool:
    """Exact facts, no judge: a count must equal the truth, yes/no must match, a sign's text must
    appear in the answer."""
    if question.kind == "count":
        return number is not None and number == question.truth
    if question.kind == "yesno":
        words = _norm(answer_text).split()
        said = "yes" if "yes" in words[:3] else "no" if "no" in words[:3] else None
        if said is None and number is not None:
            said = "yes" if number > 0 else "no"
        return said == ("yes" if question.truth else "no")
    return any(_norm(t) in _norm(answer_text) for t in question.truth)


def cv_answer(question: EvalQuestion, result: PerceptionResult) -> tuple[str, int | None]:
    """The answer the CV JSON implies, by rule (the ceiling an LLM reading it can reach)."""
    s = result.safety
    counts = {
        "people": sum(o.label == ObjectClass.PERSON for o in result.objects),
        Rule.NO_HARD_HAT: s.workers_without_hard_hat if s else 0,
        Rule.NO_VEST: s.workers_without_vest if s else 0,
        "in_zone": sum(Zone.FORKLIFT_ZONE in w.zones for w in s.workers) if s else 0,
        "forklifts": sum(o.label == ObjectClass.FORKLIFT for o in result.objects),
    }
    qid = question.id.split(":")[1]
    if qid in counts:
        return str(counts[qid]), counts[qid]
    if qid == "any_no_hat":
        return ("yes" if counts[Rule.NO_HARD_HAT] else "no"), counts[Rule.NO_HARD_HAT]
    return " / ".join(t.text for t in result.text_regions), None


@dataclass
class EvalAnswer:
    """One evaluated answer: the question, what the model said, whether it is right, and its cost.

    ``reasoner_answer`` is the reasoner's whole answer (structured value, tool steps, allowed tools)
    and ``scene`` the CV facts it was asked about, so a run can be checked after the fact without
    wrapping the reasoner. ``error`` is a provider failure that survived the retries (the answer then
    counts as wrong)."""

    question: EvalQuestion
    provider: str
    mode: str
    strategy: str
    answer: str = ""
    number: int | None = None
    correct: bool = False
    cv_ceiling: bool = False  # the CV JSON answered by rule is right: the answer was within reach
    valid: bool = False
    latency_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    tool_calls: int = 0
    tool_rounds: int = 0
    error: str | None = None
    reasoner_answer: Any = field(default=None, repr=False)
    scene: PerceptionResult | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.question.kind

    @property
    def expected(self) -> Any:
        return self.question.truth

    @property
    def tokens(self) -> int:
        return self.usage.total_tokens

    def row(self) -> dict[str, Any]:
        """The answer as one flat table row (for ``pandas.DataFrame([a.row() for a in answers])``)."""
        return {
            "id": self.question.id, "kind": self.kind, "provider": self.provider, "mode": self.mode,
            "strategy": self.strategy, "truth": self.expected, "answer": self.answer, "number": self.number,
            "correct": self.correct, "cv_ceiling": self.cv_ceiling, "valid": self.valid,
            "tool_calls": self.tool_calls, "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens, "cost_usd": self.cost_usd,
            "latency_s": round(self.latency_s, 3), "tool_rounds": self.tool_rounds, "error": self.error,
        }


# A request that failed after the client's retries: that question is lost, not the run. Key and
# model errors are not here: they would fail every question the same way.
ANSWER_ERRORS = (errors.RateLimitError, errors.ProviderTimeoutError, errors.ProviderConnectionError,
                 errors.ProviderError, errors.ContextWindowError, errors.InvalidRequestError)


def evaluate(reasoner_factory: Callable[[], Any], questions: list[EvalQuestion], mode: str = "standard",
             strategy: str = "direct", progress: bool = True) -> list[EvalAnswer]:
    """One :class:`EvalAnswer` per question, each from a fresh history: the answer, whether it is
    right, and what the CV JSON allowed."""
    from tqdm.auto import tqdm

    reasoner = reasoner_factory()
    answers = []
    for q in tqdm(questions, desc=f"{mode}/{strategy}", disable=not progress, leave=False):
        result = load_result(q.cv_path)
        reasoner.reset()
        cv_text, cv_number = cv_answer(q, result)
        out = EvalAnswer(q, reasoner.client.label, mode, strategy, cv_ceiling=score(q, cv_text, cv_number),
                         scene=result)
        try:
            answer = reasoner.analyze(result, q.question, mode=mode, strategy=strategy)
        except ANSWER_ERRORS as exc:
            out.error = f"{type(exc).__name__}: {exc}"
            answers.append(out)
            continue
        out.answer, out.number, out.valid = answer.answer, answer.number, answer.valid
        out.correct = score(q, answer.answer, answer.number)
        out.latency_s, out.usage, out.cost_usd = answer.latency_s, answer.usage, answer.cost_usd
        out.tool_calls, out.tool_rounds = len(answer.tool_steps), answer.tool_rounds
        out.reasoner_answer = answer
        answers.append(out)
    return answers
