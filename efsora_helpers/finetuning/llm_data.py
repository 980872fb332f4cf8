"""Instruction data for the local LLM, generated from SafetyScenes ground truth.

Chapter 2 measured that SmolLM2-135M-Instruct cannot reliably read a number out of the scene JSON.
This module writes the lesson the model needs: thousands of questions over scene facts with answers
that are *exactly* right, because they come from the generator's ground truth. Each example is the
prompt chapter 2's ``local`` provider sends (:meth:`LocalProvider.prompt_for`: the reasoner's system
prompt, the schema instruction, the compact scene facts, the question) followed by the answer in
chapter 2's schema (:class:`~efsora_helpers.reasoner.structured.DirectResponse`), so the evaluation
after fine-tuning is like for like. A second family are tool-call traces over chapter 2's scene
tools (which chapter 3's agent reuses), in the tools mode's format: the call, the tool's real
result, and the final answer.

Where the facts come from: a scene's ground truth written in the perception schema (a perfect
detector: :func:`facts_from_ground_truth`), so facts and answers agree; the model learns to *read*,
not to perceive. Scenes: the shipped ``train`` and ``val`` splits and, optionally, freshly rendered
scenes from seeds no split uses (:data:`FRESH_SEED_BASE`). Never the ``test`` split, which holds
chapter 2's evaluation scenes.

The pipeline runs on Hugging Face ``datasets`` (:func:`prepare`): chat template, quality filters,
exact deduplication, decontamination against chapter 2's evaluation set (scene ids, seeds, scene
facts, and word n-grams of the questions: :func:`contamination`), and a split by scene so no scene
is in both train and validation. ``efsora finetune llm-data`` runs it and saves the
``DatasetDict`` under ``$EFSORA_HOME/finetuning/llm_data``. Taught in
``notebooks/finetuning/04_instruction_data.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from ..vocabulary import IN_FORKLIFT_ZONE, ZONE_LABELS, Count, ObjectClass, Zone

#: Fresh scenes are rendered from seeds here and up: the shipped splits use 100k, 200k and 300k,
#: the detector's fresh test set 900k (``safetyscenes.dataset``).
FRESH_SEED_BASE = 500_000
#: Source splits: never ``test`` (chapter 2's evaluation scenes are test scenes).
SOURCE_SPLITS = ("train", "val")
NGRAM = 8  # word n-gram length of the question overlap check (shorter questions: the whole question)
MAX_PROMPT_TOKENS = 1200  # quality filter: longer prompts are dropped (CPU training cost)
TOKEN_BUDGET = 1200  # the reasoner's default scene-facts budget (VisualReasoner(token_budget=1200))
TOOLS_INTRO = "Use the tools to look up facts about the current warehouse scene, then answer.\n"

_HAT, _VEST, _PERSON = ObjectClass.HARD_HAT, ObjectClass.VEST, ObjectClass.PERSON

# ---- question templates ------------------------------------------------------------------------
# kind -> paraphrases. Some paraphrases coincide with (or contain) chapter 2's evaluation wording,
# as they would in any real generator: decontamination removes those. The rest teach the same
# skill in other words, so the evaluation also measures whether the skill transfers to new wording.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "people": ("How many people are in the scene?", "How many people can you see?",
               "Count the people in this image.", "What is the number of people in the scene?",
               "How many persons are visible?", "How many workers are there in total?"),
    "without_hat": ("How many workers are not wearing a hard hat?", "How many workers have no hard hat?",
                    "Count the workers without a hard hat.", "How many people are missing a hard hat?",
                    "How many workers lack head protection?"),
    "without_vest": ("How many workers are not wearing a safety vest?", "How many workers have no vest?",
                     "Count the workers without a safety vest.", "How many people are missing a vest?",
                     "How many workers lack a high-visibility vest?"),
    "in_zone": ("How many workers are inside the forklift zone?", "How many workers stand in the forklift lane?",
                "Count the workers in the forklift zone.", "How many people are in the forklift area?"),
    "forklifts": ("How many forklifts are in the scene?", "How many forklifts can you see?",
                  "Count the forklifts.", "What is the number of forklifts?"),
    "any_without_hat": ("Is any worker missing a hard hat? Answer yes or no.",
                        "Does anyone lack a hard hat? Answer yes or no.",
                        "Are all workers wearing hard hats? Answer yes or no."),
    "sign_text": ("What does the sign say?", "Read the text on the signs.", "What is written on the sign?",
                  "Which text appears on the signs?"),
    "pallets": ("How many pallets are in the scene?", "Count the pallets.", "How many pallets can you see?"),
    "any_without_vest": ("Is any worker missing a safety vest? Answer yes or no.",
                         "Does anyone lack a vest? Answer yes or no."),
    "any_in_zone": ("Is anyone in the forklift zone? Answer yes or no.",
                    "Is any worker standing in the forklift lane? Answer yes or no."),
}

# Chapter 3's task kinds that map onto one scene tool (its other kinds need the handbook, files or
# approvals: later sessions). kind -> (question kinds, the tool that answers them).
TOOL_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "count": (("people", "forklifts", "pallets"), "count_objects"),
    "ppe": (("without_hat", "without_vest", "any_without_hat", "any_without_vest"), "check_ppe"),
    "zone": (("in_zone", "any_in_zone"), "objects_in_zone"),
    ObjectClass.SIGN.value: (("sign_text",), "read_text_near"),  # chapter 3 calls this kind "sign"
}
_COUNTED = {"people": _PERSON, "forklifts": ObjectClass.FORKLIFT, "pallets": ObjectClass.PALLET}


# ---- scenes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceScene:
    scene_id: str
    seed: int
    ground_truth: dict[str, Any] = field(repr=False, compare=False)


def shipped_source_scenes(splits: Iterable[str] = SOURCE_SPLITS) -> list[SourceScene]:
    from ..safetyscenes.shipped import shipped_scenes

    out = []
    for split in splits:
        for s in shipped_scenes(split):
            out.append(SourceScene(s.scene_id, int(s.ground_truth["seed"]), s.ground_truth))
    return out


def fresh_source_scenes(n: int, cache_dir: Path | None = None, progress: bool = False) -> list[SourceScene]:
    """``n`` new scenes from seeds :data:`FRESH_SEED_BASE` + k, ground truth only (~0.6 s each to
    render), cached as JSON under ``$EFSORA_HOME/finetuning/fresh_scenes``."""
    from ..paths import efsora_home
    from ..safetyscenes.dataset import ground_truth
    from ..safetyscenes.render import render_scene

    cache_dir = cache_dir or efsora_home() / "finetuning" / "fresh_scenes"
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        scene_id = f"fresh_{k:04d}"
        path = cache_dir / f"{scene_id}.json"
        if path.exists():
            g = json.loads(path.read_text())
        else:
            scene = render_scene(FRESH_SEED_BASE + k, scene_id)
            g = ground_truth(scene, f"images/fresh/{scene_id}.jpg")
            path.write_text(json.dumps(g))
        if progress and k % 50 == 0:
            print(f"fresh scenes: {k}/{n}")
        out.append(SourceScene(scene_id, int(g["seed"]), g))
    return out


def facts_from_ground_truth(g: dict[str, Any]):
    """A scene's ground truth as a chapter 1 :class:`PerceptionResult` (a perfect detector).

    Object ids are renumbered 0..n-1 in order of a made-up confidence, highest first, as the engine
    writes them; confidences are drawn from the scene's seed (0.55-0.97) so the facts look like the
    engine's. PPE and zones per worker come from the ground truth, not from box geometry, so the
    facts and the answers agree exactly.
    """
    from ..perception.safety import ground_point, in_polygon, rule_violations
    from ..perception.schema import DetectedObject, ImageInfo, PerceptionResult, SafetySummary, TextRegion, WorkerStatus

    rng = random.Random(int(g["seed"]))
    objs = [(round(rng.uniform(0.55, 0.97), 4), o) for o in g["objects"]]
    objs.sort(key=lambda t: -t[0])
    new_id = {o["id"]: k for k, (_, o) in enumerate(objs)}
    objects = [DetectedObject(id=new_id[o["id"]], label=o["label"], confidence=c, bbox=o["bbox"]) for c, o in objs]
    zones = {name: [tuple(p) for p in poly] for name, poly in g.get("zones", {}).items()}
    workers = [WorkerStatus(object_id=new_id[w["id"]], bbox=w["bbox"], hard_hat=bool(w[_HAT]), vest=bool(w[_VEST]),
                            zones=[Zone.FORKLIFT_ZONE] if w.get(IN_FORKLIFT_ZONE) else [])
               for w in sorted(g["workers"], key=lambda w: new_id[w["id"]])]
    in_zones = {}
    for name, poly in zones.items():
        ids = [w.object_id for w in workers if name in w.zones]
        ids += [o.id for o in objects if o.label in ZONE_LABELS and o.label != _PERSON
                and in_polygon(ground_point(o.bbox), poly)]
        in_zones[name] = sorted(ids)
    safety = SafetySummary(workers=workers, workers_without_hard_hat=sum(not w.hard_hat for w in workers),
                           workers_without_vest=sum(not w.vest for w in workers), objects_in_zones=in_zones,
                           rule_violations=rule_violations(workers))
    texts = [TextRegion(id=k, text=t["text"], bbox=t["bbox"], confidence=round(rng.uniform(0.6, 0.99), 4))
             for k, t in enumerate(g.get("text_regions", []))]
    info = g["image_info"]
    return PerceptionResult(image_path=g.get("image_path", ""), image_info=ImageInfo(width=info["width"],
                            height=info["height"]), objects=objects, text_regions=texts, zones=zones, safety=safety,
                            stages=["detection", "ocr"])


# ---- answers -----------------------------------------------------------------------------------
def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def answer_for(kind: str, result) -> dict[str, Any] | None:
    """The :class:`DirectResponse` for a question kind, read from the facts (``None``: no answer,
    e.g. no sign to read). Keys in schema order: the order the constrained model writes them."""
    s = result.safety
    workers = s.workers if s else []
    if kind in _COUNTED:
        ids = [o.id for o in result.objects if o.label == _COUNTED[kind]]
        label = _COUNTED[kind].value
        noun = (label, "people") if kind == "people" else (label, label + "s")
        text = f"There {'is' if len(ids) == 1 else 'are'} {_plural(len(ids), *noun)} in the scene."
        return {"answer": text, "number": len(ids), "evidence": ids[:4]}
    if kind in ("without_hat", "without_vest", "in_zone"):
        if kind == "in_zone":
            ids = [w.object_id for w in workers if Zone.FORKLIFT_ZONE in w.zones]
            what = "in the forklift zone"
        else:
            item = _HAT if kind == "without_hat" else _VEST
            ids = [w.object_id for w in workers if not getattr(w, item)]
            what = "without a hard hat" if item == _HAT else "without a safety vest"
        who = f" (ids {', '.join(map(str, ids))})" if 1 < len(ids) <= 4 else f" (id {ids[0]})" if len(ids) == 1 else ""
        return {"answer": f"{_plural(len(ids), 'worker', 'workers')} {what}{who}.", "number": len(ids),
                "evidence": ids[:4]}
    if kind in ("any_without_hat", "any_without_vest", "any_in_zone"):
        if kind == "any_in_zone":
            ids = [w.object_id for w in workers if Zone.FORKLIFT_ZONE in w.zones]
            yes, no = "Yes: {} in the forklift zone.", "No: nobody is in the forklift zone."
        else:
            item = _HAT if kind == "any_without_hat" else _VEST
            ids = [w.object_id for w in workers if not getattr(w, item)]
            name = "hard hat" if item == _HAT else "safety vest"
            yes, no = "Yes: {} without a " + name + ".", "No: every worker wears a " + name + "."
        return {"answer": yes.format(_plural(len(ids), "worker", "workers")) if ids else no, "number": None,
                "evidence": ids[:4]}
    if kind == "sign_text":
        texts = [t.text for t in result.text_regions]
        if not texts:
            return None
        said = " and ".join(f'"{t}"' for t in texts[:3])
        return {"answer": f"The sign{'s say' if len(texts) > 1 else ' says'} {said}."[:120], "number": None,
                "evidence": []}
    raise ValueError(f"unknown question kind {kind!r}")


# The yes/no question "Are all workers wearing hard hats?" inverts the answer.
_INVERTED = {"Are all workers wearing hard hats? Answer yes or no."}


def _invert(answer: dict[str, Any]) -> dict[str, Any]:
    text = answer["answer"]
    flipped = ("No: " + text[5:]) if text.startswith("Yes: ") else ("Yes: " + text[4:])
    return {**answer, "answer": flipped}


# ---- prompts exactly as chapter 2 sends them ---------------------------------------------------
@lru_cache(maxsize=1)
def tokenizer():
    """SmolLM2's tokenizer and chat template, from the dequantised local weights (offline)."""
    from ..env import prepare_offline_environment

    prepare_offline_environment()
    from transformers import AutoTokenizer

    from ..llm.local import dequantised_dir

    return AutoTokenizer.from_pretrained(dequantised_dir())


def count_tokens(text: str) -> int:
    return len(tokenizer()(text, add_special_tokens=False).input_ids)


def direct_messages(result, question: str) -> tuple[list[dict[str, str]], list[str]]:
    """The chat dicts the local provider renders for a standard/direct question (and what the
    token budget dropped): :class:`PromptEngine` messages, the schema instruction inserted before
    the question, system parts merged, as :meth:`LocalProvider.prompt_for` does."""
    from ..llm.local_provider import to_chat_dicts
    from ..llm.structured import schema_of
    from ..llm.types import Message, schema_instruction
    from ..reasoner.prompts import PromptEngine
    from ..reasoner.structured import DirectResponse

    built = PromptEngine(count_tokens, token_budget=TOKEN_BUDGET).build(result, question, "direct")
    messages = built.messages
    messages = [*messages[:-1], Message(role="system", content=schema_instruction(schema_of(DirectResponse))),
                messages[-1]]
    return to_chat_dicts(messages), built.dropped


def completion_json(obj: dict[str, Any]) -> str:
    """JSON as the constrained runtime writes it (``", "`` and ``": "`` separators)."""
    return json.dumps(obj, ensure_ascii=False)


def tool_trace(result, question: str, tool: str, kind: str) -> list[dict[str, Any]]:
    """A tools-mode trace as training examples: the first call (``tool_choice=required``), the turn
    that stops calling tools (``auto``: an ``{"answer"}``), and the final answer in the schema
    (``tool_choice=none``). The tool runs for real on the scene, so its result is the one the loop
    would feed back."""
    from ..llm.local_provider import to_chat_dicts
    from ..llm.structured import schema_of
    from ..llm.types import Message, ToolCall, assistant, schema_instruction, tool_result, user
    from ..reasoner.prompts import PromptEngine
    from ..reasoner.reasoner import tools_for_question
    from ..reasoner.scene_tools import SceneSession, scene_tools
    from ..reasoner.structured import DirectResponse

    allowed = tools_for_question(question)
    if tool not in allowed:
        return []
    registry = scene_tools(SceneSession(result))
    engine = PromptEngine(count_tokens, token_budget=TOKEN_BUDGET)
    signs = engine.sign_text(result)
    messages = [engine.system_message("direct"),
                user(TOOLS_INTRO + (signs + "\n" if signs else "") + "Question: " + question)]
    if tool == "count_objects":
        args = {"class_name": str(_COUNTED[kind])}
    elif tool == "check_ppe":
        args = {}
    elif tool == "objects_in_zone":
        args = {"zone": str(Zone.FORKLIFT_ZONE)}
    else:
        sign = next((o.id for o in result.objects if o.label == ObjectClass.SIGN), None)
        if sign is None:
            return []
        args = {"object_id": sign}
    call = ToolCall(id="call_0", name=tool, arguments=args)
    done = registry.call(call, allowed)
    if done.is_error:
        return []
    specs = registry.specs(allowed)
    final = answer_for(kind, result)
    if final is None:
        return []
    if question in _INVERTED:
        final = _invert(final)
    after = [*messages, assistant("", [call]), tool_result(call, done.content, done.is_error)]
    with_schema = [*after[:-1], Message(role="system", content=schema_instruction(schema_of(DirectResponse))),
                   after[-1]]
    return [
        {"messages": to_chat_dicts(messages, specs), "completion": completion_json({"tool": tool, "arguments": args}),
         "turn": "call"},
        {"messages": to_chat_dicts(after, specs), "completion": completion_json({"answer": final["answer"]}),
         "turn": "stop"},
        {"messages": to_chat_dicts(with_schema), "completion": completion_json(final), "turn": "final"},
    ]


# ---- generation --------------------------------------------------------------------------------
def generate_examples(scenes: list[SourceScene], per_kind: int = 1, tool_traces: bool = True,
                      seed: int = 0) -> list[dict[str, Any]]:
    """Raw examples: per scene and question kind, ``per_kind`` paraphrases drawn *with replacement*
    (so duplicates happen, as in any template generator, and deduplication has work to do), plus
    one tools-mode trace per chapter 3 task kind. Every row keeps its provenance (scene id, seed,
    kind, question) for the filters."""
    rng = random.Random(seed)
    rows = []
    for scene in scenes:
        result = facts_from_ground_truth(scene.ground_truth)
        base = {"scene_id": scene.scene_id, "seed": scene.seed, "facts_sha": facts_fingerprint(result)}
        for kind, phrasings in QUESTIONS.items():
            for _ in range(per_kind):
                question = rng.choice(phrasings)
                answer = answer_for(kind, result)
                if answer is None:
                    continue
                if question in _INVERTED:
                    answer = _invert(answer)
                messages, dropped = direct_messages(result, question)
                rows.append({**base, "family": "direct", "kind": kind, "turn": "final", "question": question,
                             "messages": messages, "completion": completion_json(answer), "dropped": dropped})
        if tool_traces:
            for task_kind, (kinds, tool) in TOOL_KINDS.items():
                kind = rng.choice(kinds)
                question = rng.choice(QUESTIONS[kind])
                for ex in tool_trace(result, question, tool, kind):
                    rows.append({**base, "family": f"tools:{task_kind}", "kind": kind, "question": question,
                                 "dropped": [], **ex})
    return rows


# ---- decontamination ---------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Word n-grams; a text shorter than ``n`` words is one n-gram of its own length."""
    w = words(text)
    return {tuple(w)} if len(w) < n else {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def facts_fingerprint(result) -> str:
    """sha256 of a scene's compact facts without boxes and confidences: equal for the same scene
    whoever perceived it, different for different scenes."""
    from ..reasoner.prompts import compact_scene

    scene = compact_scene(result, boxes=False)
    scene["objects"] = sorted((o["label"] for o in scene.get("objects", [])))
    for w in scene.get("workers", []):
        w.pop("id", None)
    scene.pop("objects_in_zones", None)
    scene["workers"] = sorted(json.dumps(w, sort_keys=True) for w in scene.get("workers", []))
    texts = sorted(t.text for t in result.text_regions)
    return hashlib.sha256(json.dumps([scene, texts], sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EvalReference:
    """What chapter 2's evaluation set is made of: scene ids, their seeds and facts, question n-grams."""

    scene_ids: set[str]
    seeds: set[int]
    facts: set[str]
    question_ngrams: set[tuple[str, ...]]
    questions: list[str]


@lru_cache(maxsize=1)
def eval_reference() -> EvalReference:
    from ..perception.schema import load_result
    from ..reasoner.evaluation import EVAL_SCENES, eval_cv_path, load_eval_set
    from ..safetyscenes.shipped import shipped_scene

    qs = load_eval_set()
    scene_ids = set(EVAL_SCENES) | {q.scene for q in qs}
    seeds, facts = set(), set()
    for sid in scene_ids:
        g = shipped_scene(sid).ground_truth
        seeds.add(int(g["seed"]))
        facts.add(facts_fingerprint(facts_from_ground_truth(g)))
        if eval_cv_path(sid).exists():  # what the engine perceived there (the prompt the eval sends)
            facts.add(facts_fingerprint(load_result(eval_cv_path(sid))))
    questions = sorted({q.question for q in qs})
    grams = set().union(*(ngrams(q) for q in questions))
    return EvalReference(scene_ids, seeds, facts, grams, questions)


def contamination(row: dict[str, Any], ref: EvalReference | None = None) -> list[str]:
    """Why a row overlaps chapter 2's evaluation set (empty: it does not)."""
    ref = ref or eval_reference()
    why = []
    if row["scene_id"] in ref.scene_ids:
        why.append("eval scene id")
    if row["seed"] in ref.seeds:
        why.append("eval scene seed")
    if row["facts_sha"] in ref.facts:
        why.append("eval scene facts")
    padded = f" {' '.join(words(row['question']))} "
    if ngrams(row["question"]) & ref.question_ngrams or any(
            f" {' '.join(g)} " in padded for g in ref.question_ngrams if len(g) < NGRAM):
        why.append(f"question shares a {NGRAM}-gram (or a whole short question) with the eval set")
    return why


# ---- the datasets pipeline ---------------------------------------------------------------------
def render_row(row: dict[str, Any]) -> dict[str, Any]:
    """``prompt`` (the chat template with the assistant header), ``completion`` (the answer and the
    end-of-turn token), ``text`` (both) and the prompt's length in tokens."""
    tok = tokenizer()
    prompt = tok.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True)
    completion = row["completion"] + "<|im_end|>"
    return {"prompt": prompt, "completion_text": completion, "text": prompt + completion,
            "prompt_tokens": count_tokens(prompt), "completion_tokens": count_tokens(completion),
            "hash": hashlib.sha256((prompt + completion).encode()).hexdigest()}


def quality_problems(row: dict[str, Any]) -> list[str]:
    """Quality filters: the answer must parse and validate, be non-empty, agree with its own number;
    the prompt must fit and keep the facts the answer needs."""
    from ..llm.structured import parse_as
    from ..reasoner.structured import DirectResponse

    out = []
    if row["prompt_tokens"] > MAX_PROMPT_TOKENS:
        out.append("prompt too long")
    if any(d != "boxes" for d in row["dropped"]):
        out.append("facts truncated beyond boxes")
    data = json.loads(row["completion"])
    if row["turn"] == "final":
        value, error = parse_as(DirectResponse, row["completion"])
        if value is None:
            out.append("invalid answer: " + str(error))
        elif not value.answer.strip():
            out.append("empty answer")
        elif value.number is not None and str(value.number) not in value.answer:
            out.append("number not in the answer text")
    elif row["turn"] == "call" and not data.get("tool"):
        out.append("no tool in a call turn")
    elif row["turn"] == "stop" and not str(data.get("answer", "")).strip():
        out.append("empty answer")
    return out


@dataclass
class DataReport:
    counts: dict[str, int]
    removed: dict[str, int]
    examples: dict[str, dict[str, int]]
    seconds: float = 0.0
    out_dir: str | None = None

    def lines(self) -> list[str]:
        out = [f"{k}: {v}" for k, v in self.counts.items()]
        out += [f"removed ({k}): {v}" for k, v in self.removed.items()]
        if self.out_dir:
            out.append(f"saved to {self.out_dir}")
        return out


def split_by_scene(scene_ids: Iterable[str], val_fraction: float, seed: int) -> set[str]:
    """The validation scenes: a seeded sample of whole scenes (no scene in both splits)."""
    ids = sorted(set(scene_ids))
    random.Random(seed).shuffle(ids)
    return set(ids[:max(1, round(len(ids) * val_fraction))])


def prepare(rows: list[dict[str, Any]], val_fraction: float = 0.1, seed: int = 0, num_proc: int | None = None,
            progress: bool = False):
    """Raw rows -> a ``DatasetDict`` (train, validation) and a :class:`DataReport` of what each
    stage removed: chat template, quality filters, exact dedup, decontamination, split by scene."""
    import time

    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar

    (enable_progress_bar if progress else disable_progress_bar)()
    t0 = time.perf_counter()
    ref = eval_reference()
    removed: dict[str, int] = {}
    ds = Dataset.from_list(rows)
    n0 = len(ds)
    ds = ds.map(render_row, num_proc=num_proc)
    # strings, not lists: an all-empty first batch would type a list column as list<null>
    ds = ds.map(lambda r: {"quality": "; ".join(quality_problems(r))})
    n = len(ds)
    ds = ds.filter(lambda r: not r["quality"])
    removed["quality"] = n - len(ds)
    seen: set[str] = set()

    def first(r):
        if r["hash"] in seen:
            return False
        seen.add(r["hash"])
        return True

    n = len(ds)
    ds = ds.filter(first)  # single process: the set is shared
    removed["duplicates"] = n - len(ds)
    ds = ds.map(lambda r: {"contamination": "; ".join(contamination(r, ref))})
    n = len(ds)
    ds = ds.filter(lambda r: not r["contamination"])
    removed["decontamination"] = n - len(ds)
    val_scenes = split_by_scene(ds["scene_id"], val_fraction, seed)
    out = DatasetDict({"train": ds.filter(lambda r: r["scene_id"] not in val_scenes),
                       "validation": ds.filter(lambda r: r["scene_id"] in val_scenes)})
    examples = {name: dict(Counter(part["family"])) for name, part in out.items()}
    counts = {"raw": n0, "train": len(out["train"]), "validation": len(out["validation"]),
              "train_scenes": len(set(out["train"]["scene_id"])), "validation_scenes": len(val_scenes)}
    return out, DataReport(counts, removed, examples, time.perf_counter() - t0)


def default_out_dir() -> Path:
    from ..paths import efsora_home

    return efsora_home() / "finetuning" / "llm_data"


def build_instruction_data(out_dir: Path | None = None, fresh_scenes: int = 0, val_fraction: float = 0.1,
                           seed: int = 0, per_kind: int = 2) -> DataReport:
    """What ``efsora finetune llm-data`` does: generate, prepare, save (``save_to_disk``) and write
    ``report.json`` beside the data."""
    from ..env import prepare_offline_environment

    prepare_offline_environment()
    scenes = shipped_source_scenes() + (fresh_source_scenes(fresh_scenes, progress=True) if fresh_scenes else [])
    rows = generate_examples(scenes, per_kind=per_kind, seed=seed)
    data, report = prepare(rows, val_fraction=val_fraction, seed=seed, progress=True)
    out_dir = Path(out_dir or default_out_dir())
    data.save_to_disk(str(out_dir))
    report.out_dir = str(out_dir)
    (out_dir / "report.json").write_text(json.dumps(
        {"counts": report.counts, "removed": report.removed, "examples": report.examples,
         "tokens": {name: {"prompt": int(sum(part["prompt_tokens"])), "completion": int(sum(part["completion_tokens"]))}
                    for name, part in data.items()},
         "seconds": round(report.seconds, 1), "fresh_scenes": fresh_scenes, "per_kind": per_kind, "seed": seed},
        indent=1) + "\n")
    return report
