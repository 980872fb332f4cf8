"""The agent's memory: a short-term conversation buffer with a running summary, and a long-term
vector memory in chromadb on disk. Taught in ``notebooks/agent/04_memory.ipynb``.

Short term, :class:`ConversationBuffer`
    The recent turns of this conversation, verbatim, as LangChain messages (the currency of the
    LangGraph agent and of every chat model :func:`efsora_helpers.llm.langchain.chat_model`
    returns). It has a token budget counted with the local model's own tokenizer (the exact ChatML
    prompt SmolLM2 sees, default system prompt included). When a new message pushes the prompt past
    the budget, the oldest whole turns are folded into a running summary written by a chat model
    (:class:`ChatSummariser`, bounded output), and the prompt becomes
    ``[system + summary] + recent turns``. Contract: after every :meth:`~ConversationBuffer.add`,
    ``buffer.tokens() <= buffer.budget`` unless the newest ``keep_turns`` turns alone exceed it
    (``buffer.over_budget`` says so).

Long term, :class:`VectorMemory`
    A chromadb ``PersistentClient`` folder with one collection in cosine space, embedded with the
    shipped MiniLM (:func:`efsora_helpers.agent.embeddings.chroma_embedding_function`; never
    chromadb's default function, which downloads a model). Ids are content hashes, so remembering
    the same text twice is one memory. Metadata (``kind`` = fact | incident | preference, a
    ``location``, a ``day`` as an int ``YYYYMMDD`` for range filters) narrows a recall with
    chromadb ``where`` filters. Telemetry is off.

When each is used, :func:`build_context`
    The policy a memory node calls: the buffer is always in the prompt (it is the conversation);
    vector memory is consulted unless the question is about this conversation ("what did I just
    ask?"), and only hits closer than ``max_distance`` that fit the token budget go in.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

#: SmolLM2's chat template inserts this system prompt when a conversation has none.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SUMMARY_HEADER = "Summary of the earlier conversation:"
MEMORY_HEADER = "Facts from long-term memory (may be out of date):"
KINDS = ("fact", "incident", "preference")

# ---------------------------------------------------------------------------------------------
# Token counting with the local model's tokenizer
# ---------------------------------------------------------------------------------------------


@functools.cache
def _local_tokenizer():
    # The `tokenizers` library alone (no transformers import): the same tokenizer.json the runtime
    # uses, so counts equal the server's prompt_tokens (checked in the notebook).
    from tokenizers import Tokenizer

    from ..llm.local import dequantised_dir

    return Tokenizer.from_file(str(dequantised_dir() / "tokenizer.json"))


def count_tokens(text: str) -> int:
    """Tokens of ``text`` for SmolLM2-135M-Instruct (ChatML special tokens count as one each)."""
    return len(_local_tokenizer().encode(text, add_special_tokens=False).ids)


def _role(message: BaseMessage) -> str:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, ToolMessage):
        return "tool"
    return message.type


def _text(message: BaseMessage) -> str:
    content = message.content if isinstance(message.content, str) else json.dumps(message.content)
    calls = getattr(message, "tool_calls", None)
    if calls:  # a tool call costs tokens too: count its JSON
        content += json.dumps([{"name": c["name"], "arguments": c["args"]} for c in calls])
    return content


def render_chatml(messages: Sequence[BaseMessage], *, generation_prompt: bool = True) -> str:
    """The prompt text SmolLM2's chat template makes of ``messages`` (ChatML)."""
    parts = []
    if not messages or _role(messages[0]) != "system":
        parts.append(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
    parts += [f"<|im_start|>{_role(m)}\n{_text(m)}<|im_end|>\n" for m in messages]
    if generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def prompt_tokens(messages: Sequence[BaseMessage], counter: Callable[[str], int] | None = None) -> int:
    """Tokens of the whole prompt the model reads for ``messages`` (default: the local tokenizer)."""
    return (counter or count_tokens)(render_chatml(messages))


def _truncate(text: str, max_tokens: int) -> str:
    tok = _local_tokenizer()
    ids = tok.encode(text, add_special_tokens=False).ids
    return text if len(ids) <= max_tokens else tok.decode(ids[:max_tokens]).strip()


# ---------------------------------------------------------------------------------------------
# Summarisers
# ---------------------------------------------------------------------------------------------

#: A summariser takes the running summary and the messages to fold in, and returns the new summary.
Summariser = Callable[[str, Sequence[BaseMessage]], str]

#: The summariser's prompt, chosen by trying five on the 135M model (notebook 04): asked to
#: "summarise" or to "update the notes", it echoed the transcript; asked for "the key facts as a
#: bullet list", with the old notes as the first line of the conversation, it wrote short fact lines.
SUMMARY_SYSTEM = "You write short notes."
SUMMARY_PROMPT = "Conversation:\n{lines}\n\nWrite the key facts as a bullet list."


def transcript(messages: Sequence[BaseMessage]) -> str:
    names = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}
    return "\n".join(f"{names.get(_role(m), _role(m))}: {_text(m)}" for m in messages)


@dataclass
class ChatSummariser:
    """A :data:`Summariser` backed by a LangChain chat model, with a bounded output.

    ``llm`` defaults to ``chat_model(provider)`` (the local 135M model unless a provider is
    configured). ``max_tokens`` bounds what the model may write; the usage of every call is kept
    in ``calls`` (input/output tokens, seconds), because a summary is not free.
    """

    llm: Any = None
    provider: str | None = None
    max_tokens: int = 96
    calls: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.llm is None:
            from ..llm.langchain import chat_model

            self.llm = chat_model(self.provider, max_tokens=self.max_tokens)
        else:
            self.llm = self.llm.bind(max_tokens=self.max_tokens)

    def __call__(self, summary: str, messages: Sequence[BaseMessage]) -> str:
        prompt = [SystemMessage(SUMMARY_SYSTEM),
                  HumanMessage(SUMMARY_PROMPT.format(lines=(f"Notes: {summary}\n" if summary else "") + transcript(messages)))]
        t0 = time.perf_counter()
        reply = self.llm.invoke(prompt)
        usage = getattr(reply, "usage_metadata", None) or {}
        self.calls.append({"input_tokens": usage.get("input_tokens", 0), "output_tokens": usage.get("output_tokens", 0),
                           "seconds": time.perf_counter() - t0})
        return str(reply.content).strip()

    @property
    def tokens_spent(self) -> int:
        return sum(c["input_tokens"] + c["output_tokens"] for c in self.calls)


# ---------------------------------------------------------------------------------------------
# The short-term buffer
# ---------------------------------------------------------------------------------------------


@dataclass
class Fold:
    """One summarisation: which messages went into the summary and what it cost."""

    at_message: int  # how many messages the buffer had seen when it folded
    folded_messages: int
    tokens_before: int
    tokens_after: int
    summary_tokens: int
    seconds: float


class ConversationBuffer:
    """Recent turns verbatim plus a running summary of older ones, within a token budget.

    Args:
        budget: the most prompt tokens (system + summary + recent turns + the generation prompt)
            the buffer may hand to the model.
        summariser: a :data:`Summariser`; default :class:`ChatSummariser` (made on first fold).
        system: the agent's system prompt (counted in the budget).
        summary_max_tokens: the summary is cut to this many tokens (the model's own bound may be
            looser), so the budget holds whatever the summariser writes.
        keep_turns: never fold the newest ``keep_turns`` turns (a turn starts at a user message).
        fold_to: after a fold the prompt is at most ``fold_to * budget`` tokens (with a full-size
            summary), so the buffer does not summarise on every turn once it is full.
        counter: text -> tokens; default the local model's tokenizer.
    """

    def __init__(self, budget: int = 512, *, summariser: Summariser | None = None, system: str | None = None,
                 summary_max_tokens: int = 96, keep_turns: int = 1, fold_to: float = 0.6,
                 counter: Callable[[str], int] | None = None):
        if summary_max_tokens >= budget:
            raise ValueError(f"summary_max_tokens ({summary_max_tokens}) must be below the budget ({budget})")
        self.budget = budget
        self._summariser = summariser
        self.system = system
        self.summary_max_tokens = summary_max_tokens
        self.keep_turns = max(1, keep_turns)
        self.fold_to = fold_to
        self.counter = counter or count_tokens
        self.messages: list[BaseMessage] = []  # recent, verbatim
        self.summary = ""
        self.folds: list[Fold] = []
        self.seen = 0  # messages ever added

    # -- reading ----------------------------------------------------------------------------------
    @property
    def summariser(self) -> Summariser:
        if self._summariser is None:
            self._summariser = ChatSummariser(max_tokens=self.summary_max_tokens)
        return self._summariser

    def system_message(self, summary: str | None = None) -> SystemMessage | None:
        summary = self.summary if summary is None else summary
        parts = [p for p in (self.system, f"{SUMMARY_HEADER}\n{summary}" if summary else None) if p]
        return SystemMessage("\n\n".join(parts)) if parts else None

    def prompt_messages(self) -> list[BaseMessage]:
        """What the model reads: ``[system + summary]`` (if any) followed by the recent turns."""
        head = self.system_message()
        return ([head] if head else []) + list(self.messages)

    def tokens(self) -> int:
        return prompt_tokens(self.prompt_messages(), self.counter)

    @property
    def over_budget(self) -> bool:
        return self.tokens() > self.budget

    # -- writing ----------------------------------------------------------------------------------
    def add(self, message: BaseMessage) -> Fold | None:
        """Append a message; fold old turns into the summary if the prompt outgrew the budget."""
        self.messages.append(message)
        self.seen += 1
        return self._fold_if_needed()

    def add_user(self, text: str) -> Fold | None:
        return self.add(HumanMessage(text))

    def add_ai(self, text: str) -> Fold | None:
        return self.add(AIMessage(text))

    def add_turn(self, user: str, assistant: str) -> Fold | None:
        self.messages.append(HumanMessage(user))
        self.seen += 1
        return self.add(AIMessage(assistant))

    def _cap(self, text: str) -> str:
        """Cut ``text`` to ``summary_max_tokens`` (by tokens with the local tokenizer, else by words)."""
        if self.counter is count_tokens:
            return _truncate(text, self.summary_max_tokens)
        words = text.split()
        while words and self.counter(" ".join(words)) > self.summary_max_tokens:
            words.pop()
        return " ".join(words)

    def _turn_starts(self) -> list[int]:
        starts = [i for i, m in enumerate(self.messages) if isinstance(m, HumanMessage)]
        return starts if starts and starts[0] == 0 else [0] + starts

    def _fold_if_needed(self) -> Fold | None:
        tokens_before = self.tokens()
        if tokens_before <= self.budget:
            return None
        # Worst-case size of the prompt with a full-length summary and the turns from `start` on.
        placeholder = " ".join(["x"] * self.summary_max_tokens)  # "x" is one token in this vocabulary
        target = int(self.fold_to * self.budget)
        starts = self._turn_starts()
        cut = None
        for start in starts[1:len(starts) - self.keep_turns + 1]:
            head = self.system_message(placeholder)
            if prompt_tokens([head, *self.messages[start:]], self.counter) <= target:
                cut = start
                break
        if cut is None:  # fold all but the newest keep_turns turns; may still be over budget
            cut = starts[-self.keep_turns] if len(starts) > self.keep_turns else 0
        if cut == 0:
            return None
        folded, self.messages = self.messages[:cut], self.messages[cut:]
        t0 = time.perf_counter()
        new_summary = self.summariser(self.summary, folded)
        self.summary = self._cap(new_summary.strip())
        fold = Fold(at_message=self.seen, folded_messages=len(folded), tokens_before=tokens_before,
                    tokens_after=self.tokens(), summary_tokens=self.counter(self.summary),
                    seconds=time.perf_counter() - t0)
        self.folds.append(fold)
        return fold


# ---------------------------------------------------------------------------------------------
# Long-term vector memory
# ---------------------------------------------------------------------------------------------


@dataclass
class MemoryHit:
    id: str
    text: str
    metadata: dict[str, Any]
    distance: float  # cosine distance, 0 (same direction) .. 2

    @property
    def score(self) -> float:
        """Cosine similarity, ``1 - distance``."""
        return 1.0 - self.distance


def memory_id(text: str) -> str:
    """A stable id from the text (whitespace and case folded): the same memory twice is one memory."""
    norm = " ".join(text.split()).lower()
    return "mem-" + hashlib.sha256(norm.encode()).hexdigest()[:16]


def _check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    clean = {}
    for key, value in metadata.items():
        if hasattr(value, "value") and isinstance(value.value, str):  # a StrEnum from the vocabulary
            value = str(value.value)
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"memory metadata {key!r} must be a str, int, float or bool, not {type(value).__name__}")
        clean[key] = value
    return clean


class VectorMemory:
    """Long-term memory: a chromadb collection on disk (cosine space, shipped MiniLM embeddings).

    >>> mem = VectorMemory(tmp_path)                                   # doctest: +SKIP
    >>> i = mem.remember("Oil spill at dock 3", {"kind": "incident"})  # doctest: +SKIP
    >>> mem.recall("where was the spill?", k=1)[0].id == i             # doctest: +SKIP
    True
    """

    def __init__(self, path: str | Path, collection: str = "agent_memory", *, embedding_function=None):
        import chromadb
        from chromadb.config import Settings

        if embedding_function is None:
            from .embeddings import chroma_embedding_function

            embedding_function = chroma_embedding_function()
        self.path = Path(path).expanduser()
        self.path.mkdir(parents=True, exist_ok=True)
        self.client = chromadb.PersistentClient(path=str(self.path),
                                                settings=Settings(anonymized_telemetry=False))
        # cosine: MiniLM vectors are compared by angle; chromadb's default space is squared L2.
        self.collection = self.client.get_or_create_collection(
            collection, embedding_function=embedding_function, metadata={"hnsw:space": "cosine"})
        self.name = collection

    def remember(self, text: str, metadata: dict[str, Any] | None = None) -> str:
        """Store ``text`` (upsert by content hash) and return its id. ``kind`` defaults to ``fact``."""
        return self.remember_many([text], [metadata])[0]

    def remember_many(self, texts: Sequence[str], metadatas: Sequence[dict | None] | None = None) -> list[str]:
        texts = [t.strip() for t in texts]
        if any(not t for t in texts):
            raise ValueError("cannot remember an empty text")
        metadatas = list(metadatas) if metadatas is not None else [None] * len(texts)
        metas = [_check_metadata({"kind": "fact", **(m or {})}) for m in metadatas]
        ids = [memory_id(t) for t in texts]
        unique = dict(zip(ids, zip(texts, metas)))  # a batch may repeat a text: last one wins
        self.collection.upsert(ids=list(unique), documents=[v[0] for v in unique.values()],
                               metadatas=[v[1] for v in unique.values()])
        return ids

    def recall(self, query: str, k: int = 3, where: dict | None = None) -> list[MemoryHit]:
        """The ``k`` memories nearest to ``query`` (optionally only those matching ``where``)."""
        n = self.count()
        if n == 0 or k <= 0:
            return []
        res = self.collection.query(query_texts=[query], n_results=min(k, n), where=where or None,
                                    include=["documents", "metadatas", "distances"])
        return [MemoryHit(id=i, text=d, metadata=dict(m or {}), distance=float(s))
                for i, d, m, s in zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0])]

    def get(self, memory_id_: str) -> MemoryHit | None:
        res = self.collection.get(ids=[memory_id_], include=["documents", "metadatas"])
        if not res["ids"]:
            return None
        return MemoryHit(id=res["ids"][0], text=res["documents"][0], metadata=dict(res["metadatas"][0] or {}),
                         distance=0.0)

    def forget(self, ids: str | Iterable[str] | None = None, *, where: dict | None = None) -> int:
        """Delete memories by id and/or metadata filter; returns how many were removed."""
        if ids is None and where is None:
            raise ValueError("forget() needs ids or a where filter (refusing to delete everything)")
        ids = [ids] if isinstance(ids, str) else (list(ids) if ids is not None else None)
        before = self.count()
        self.collection.delete(ids=ids, where=where)
        return before - self.count()

    def count(self) -> int:
        return self.collection.count()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"VectorMemory({str(self.path)!r}, collection={self.name!r}, count={self.count()})"


def default_memory_path() -> Path:
    """The per-user memory folder: ``$EFSORA_HOME/agent/memory``."""
    from ..paths import efsora_home

    return efsora_home() / "agent" / "memory"


@functools.cache
def _default_memory(path: str) -> VectorMemory:
    return VectorMemory(path)


def default_memory() -> VectorMemory:
    """The process's shared per-user :class:`VectorMemory` (what tools use when none is passed)."""
    return _default_memory(str(default_memory_path()))


# ---------------------------------------------------------------------------------------------
# Evaluation on the labelled set (data/agent/memory_eval.yaml)
# ---------------------------------------------------------------------------------------------


def eval_set_path() -> Path:
    from ..paths import repo_root

    return repo_root() / "data" / "agent" / "memory_eval.yaml"


def load_eval_set(path: str | Path | None = None) -> dict:
    """The labelled memories and queries (see the YAML's header for the fields)."""
    import yaml

    data = yaml.safe_load(Path(path or eval_set_path()).read_text())
    from ..vocabulary import RULES

    keys = [m["key"] for m in data["memories"]]
    if len(set(keys)) != len(keys):
        raise ValueError("memory keys must be unique")
    for m in data["memories"]:
        if m.get("kind") not in KINDS or m.get("rule", RULES[0]) not in RULES:
            raise ValueError(f"memory {m['key']!r}: kind must be one of {KINDS}, rule one of the vocabulary's {RULES}")
    for q in data["queries"]:
        missing = set(q["relevant"]) - set(keys)
        if missing:
            raise ValueError(f"query {q['query']!r} names unknown memories {sorted(missing)}")
    return data


def load_memories(memory: VectorMemory, data: dict) -> dict[str, str]:
    """Store the labelled memories; returns key -> stored id."""
    metas = [{k: v for k, v in m.items() if k != "text"} for m in data["memories"]]
    ids = memory.remember_many([m["text"] for m in data["memories"]], metas)
    return {m["key"]: i for m, i in zip(data["memories"], ids)}


def rank_of_first_relevant(hits: Sequence[MemoryHit], relevant: set[str]) -> int | None:
    return next((r for r, h in enumerate(hits, 1) if h.id in relevant), None)


def retrieval_metrics(memory: VectorMemory, queries: Sequence[dict], ids: dict[str, str], *, ks=(1, 3, 5),
                      use_filters: bool = False) -> tuple[dict[str, float], list[dict]]:
    """recall@k (share of a query's relevant memories in the top k, averaged), MRR and latency.

    Returns ``(summary, rows)``; ``rows`` has one dict per query (rank of the first relevant hit,
    top hit key, seconds). With ``use_filters`` each query's ``where`` is applied.
    """
    by_id = {v: k for k, v in ids.items()}
    rows = []
    for q in queries:
        relevant = {ids[k] for k in q["relevant"]}
        where = q.get("where") if use_filters else None
        t0 = time.perf_counter()
        hits = memory.recall(q["query"], k=max(ks), where=where)
        seconds = time.perf_counter() - t0
        rank = rank_of_first_relevant(hits, relevant)
        row = {"query": q["query"], "filtered": bool(where), "rank": rank, "rr": 1.0 / rank if rank else 0.0,
               "top": by_id.get(hits[0].id) if hits else None, "top_distance": hits[0].distance if hits else None,
               "seconds": seconds}
        for k in ks:
            row[f"recall@{k}"] = len({h.id for h in hits[:k]} & relevant) / len(relevant)
        rows.append(row)
    n = max(1, len(rows))
    summary = {f"recall@{k}": sum(r[f"recall@{k}"] for r in rows) / n for k in ks}
    summary["mrr"] = sum(r["rr"] for r in rows) / n
    summary["median_ms"] = 1000 * sorted(r["seconds"] for r in rows)[len(rows) // 2] if rows else 0.0
    return summary, rows


# ---------------------------------------------------------------------------------------------
# When each memory is used
# ---------------------------------------------------------------------------------------------

#: Questions about this conversation: the buffer answers them; the vector store is not consulted.
CONVERSATION_CUES = ("just ask", "just said", "just told", "you said", "i said", "i asked", "i told you",
                     "this conversation", "a moment ago", "earlier today", "my last question", "my previous question",
                     "you just", "did i just", "above")
#: Questions about other sessions: the vector store is consulted (so are cue-less questions).
LONG_TERM_CUES = ("last week", "yesterday", "last month", "last time", "last shift", "previous shift", "usually",
                  "ever", "history", "remember", "prefer", "preference", "on record", "before today")


def route_query(query: str) -> str:
    """``"buffer"`` for a question about this conversation, else ``"buffer+vector"``."""
    q = " " + re.sub(r"\s+", " ", query.lower()) + " "
    if any(f" {c} " in q or f" {c}?" in q or f" {c}," in q for c in LONG_TERM_CUES):
        return "buffer+vector"
    if any(c in q for c in CONVERSATION_CUES):
        return "buffer"
    return "buffer+vector"


@dataclass
class MemoryContext:
    """What :func:`build_context` hands the model, and why."""

    messages: list[BaseMessage]  # system (+summary, +recalled memories), recent turns, then the query
    route: str  # "buffer" | "buffer+vector"
    hits: list[MemoryHit]  # memories put in the prompt
    skipped: list[MemoryHit]  # recalled but too far (distance) or over the token budget
    tokens: int  # prompt tokens of `messages` (local tokenizer)
    recall_s: float = 0.0


def build_context(query: str, buffer: ConversationBuffer | None = None, memory: VectorMemory | None = None, *,
                  budget: int = 768, k: int = 3, max_distance: float = 0.6, where: dict | None = None,
                  system: str | None = None, route: str | None = None,
                  counter: Callable[[str], int] | None = None) -> MemoryContext:
    """The prompt for answering ``query`` from memory, within ``budget`` tokens.

    Policy: the buffer (summary + recent turns) is always included, it *is* the conversation.
    Vector memory is recalled unless :func:`route_query` says the question is about this
    conversation (or ``route="buffer"`` forces it); hits farther than ``max_distance`` (cosine) are
    skipped, and hits are added nearest first while the prompt stays within ``budget``. The query is
    the last message. The buffer is not modified: add the turn after the model answers.
    """
    counter = counter or (buffer.counter if buffer is not None else count_tokens)
    route = route or route_query(query)
    base_system = system if system is not None else (buffer.system if buffer is not None else None)
    summary = buffer.summary if buffer is not None else ""
    recent = list(buffer.messages) if buffer is not None else []
    hits: list[MemoryHit] = []
    skipped: list[MemoryHit] = []
    recall_s = 0.0
    candidates: list[MemoryHit] = []
    if route != "buffer" and memory is not None:
        t0 = time.perf_counter()
        candidates = memory.recall(query, k=k, where=where)
        recall_s = time.perf_counter() - t0

    def assemble(chosen: list[MemoryHit]) -> list[BaseMessage]:
        parts = [p for p in (base_system, f"{SUMMARY_HEADER}\n{summary}" if summary else None) if p]
        if chosen:
            parts.append(MEMORY_HEADER + "\n" + "\n".join(f"- {h.text}" for h in chosen))
        head = [SystemMessage("\n\n".join(parts))] if parts else []
        return head + recent + [HumanMessage(query)]

    for hit in candidates:
        if hit.distance > max_distance:
            skipped.append(hit)
        elif prompt_tokens(assemble(hits + [hit]), counter) <= budget:
            hits.append(hit)
        else:
            skipped.append(hit)
    messages = assemble(hits)
    return MemoryContext(messages=messages, route=route, hits=hits, skipped=skipped,
                         tokens=prompt_tokens(messages, counter), recall_s=recall_s)


__all__ = ["ChatSummariser", "ConversationBuffer", "Fold", "KINDS", "MemoryContext", "MemoryHit", "Summariser",
           "VectorMemory", "build_context", "count_tokens", "default_memory", "default_memory_path", "eval_set_path",
           "load_eval_set", "load_memories", "memory_id", "retrieval_metrics", "rank_of_first_relevant",
           "prompt_tokens", "render_chatml", "route_query", "transcript"]
