"""The agent's memory (efsora_helpers.agent.memory): the buffer's budget logic, chromadb on disk,
retrieval quality on the labelled set, persistence across processes. Notebook: notebooks/agent/04_memory.ipynb."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from chromadb.api.types import Documents, EmbeddingFunction
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from efsora_helpers.agent.memory import (
    ConversationBuffer,
    VectorMemory,
    build_context,
    count_tokens,
    load_eval_set,
    load_memories,
    memory_id,
    prompt_tokens,
    render_chatml,
    retrieval_metrics,
    route_query,
)

#: recall@3 bar on the labelled set with the shipped MiniLM. Measured 0.93 without filters and
#: 0.97 with them (notebook 04, December 2026); the bar leaves room for one more miss each.
RECALL3_BAR = 0.9
RECALL3_FILTERED_BAR = 0.94


class FakeSummariser:
    """A fake summariser for unit tests: keeps the first word of every folded message, counts calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, summary, messages):
        self.calls.append((summary, list(messages)))
        return (summary + " " + " ".join(m.content.split()[0] for m in messages)).strip()


class FakeHashEmbedding(EmbeddingFunction[Documents]):
    """A fake chromadb embedding function for unit tests (a hash of each word; no model)."""

    def __init__(self):
        pass

    def __call__(self, input):  # noqa: A002 (chromadb's name)
        out = []
        for text in input:
            v = np.zeros(64, dtype=np.float32)
            for w in text.lower().split():
                v[int(hashlib.md5(w.strip("?.,").encode()).hexdigest(), 16) % 64] += 1
            out.append(v / max(np.linalg.norm(v), 1e-9))
        return out

    @staticmethod
    def name():
        return "fake_hash"

    def get_config(self):
        return {}

    @staticmethod
    def build_from_config(config):
        return FakeHashEmbedding()

    def default_space(self):
        return "cosine"

    def supported_spaces(self):
        return ["cosine"]


def words(text: str) -> int:  # a fake token counter: one token per word
    return len(text.split())


def turn(i: int) -> tuple[str, str]:
    return (f"question {i} about dock {i} and the forklift lane today",
            f"answer {i}: dock {i} is clear and the lane is free of pallets")


# ---- the buffer -------------------------------------------------------------------------------

def test_token_count_is_the_servers_prompt_count():
    # 32 = prompt_tokens the loopback server reported for this request (measured, notebook 04)
    assert prompt_tokens([HumanMessage("Say hello")]) == 32
    assert count_tokens("<|im_start|>") == 1
    assert render_chatml([SystemMessage("s"), HumanMessage("u")]).startswith("<|im_start|>system\ns<|im_end|>")


def test_buffer_under_budget_never_summarises():
    fake = FakeSummariser()
    buf = ConversationBuffer(10_000, summariser=fake, counter=words)
    for i in range(5):
        buf.add_turn(*turn(i))
    assert fake.calls == [] and buf.summary == "" and len(buf.messages) == 10


def test_buffer_folds_old_turns_and_stays_within_budget():
    fake = FakeSummariser()
    buf = ConversationBuffer(120, summariser=fake, system="You are a safety assistant.", summary_max_tokens=30,
                             counter=words)
    for i in range(30):
        buf.add_turn(*turn(i))
        assert buf.tokens() <= buf.budget, (i, buf.tokens())
        assert isinstance(buf.messages[0], HumanMessage)  # whole turns are folded, never half a turn
    assert fake.calls, "30 turns at ~20 words each must outgrow 120"
    assert buf.folds and all(f.tokens_after < f.tokens_before for f in buf.folds)
    assert words(buf.summary) <= 30  # cut to summary_max_tokens whatever the summariser wrote
    # hysteresis: far fewer summaries than turns
    assert len(fake.calls) < 30 / 2
    # the newest turn is always verbatim; the prompt is system+summary then the recent turns
    assert buf.messages[-1].content == turn(29)[1]
    head = buf.prompt_messages()[0]
    assert isinstance(head, SystemMessage) and "safety assistant" in head.content and buf.summary in head.content
    # every message was either folded or is still in the buffer
    assert sum(len(m) for _, m in fake.calls) + len(buf.messages) == 60


def test_buffer_keeps_newest_turns_even_over_budget():
    fake = FakeSummariser()
    buf = ConversationBuffer(40, summariser=fake, summary_max_tokens=10, keep_turns=1, counter=words)
    buf.add_turn("short question", "short answer")
    buf.add_user("a very long question " * 20)
    assert buf.over_budget  # the newest turn alone is over: it is kept, and the buffer says so
    assert buf.messages[-1].content.startswith("a very long question")
    assert len(fake.calls) == 1 and fake.calls[0][1][0].content == "short question"


def test_buffer_rejects_a_summary_cap_above_the_budget():
    with pytest.raises(ValueError):
        ConversationBuffer(50, summariser=FakeSummariser(), summary_max_tokens=50, counter=words)


def test_buffer_with_the_local_tokenizer():
    fake = FakeSummariser()
    buf = ConversationBuffer(200, summariser=fake, summary_max_tokens=40)
    for i in range(12):
        buf.add_turn(*turn(i))
        assert buf.tokens() <= 200
    assert fake.calls


def test_route_query():
    assert route_query("What did I just ask?") == "buffer"
    assert route_query("What did you say a moment ago?") == "buffer"
    assert route_query("Which dock had the spill last week?") == "buffer+vector"
    assert route_query("How does Maria prefer her reports?") == "buffer+vector"
    assert route_query("How fast may forklifts drive?") == "buffer+vector"


# ---- vector memory on disk (fake embeddings: chromadb is real) ---------------------------------

def test_vector_memory_round_trip_on_disk(tmp_path):
    mem = VectorMemory(tmp_path / "mem", embedding_function=FakeHashEmbedding())
    a = mem.remember("Oil spill at dock 3", {"kind": "incident", "location": "dock 3", "day": 20261126})
    b = mem.remember("The spill kit is next to dock 3", {"kind": "fact"})
    c = mem.remember("Maria prefers bullet lists", {"kind": "preference"})
    assert a == memory_id("oil  spill at DOCK 3") and len({a, b, c}) == 3  # content hash, case/space folded
    assert mem.remember("Oil spill at dock 3", {"kind": "incident"}) == a and mem.count() == 3  # no duplicate
    hits = mem.recall("oil spill dock 3", k=2)
    assert hits[0].id == a and hits[0].distance < hits[1].distance and 0 <= hits[0].distance <= 2
    assert abs(hits[0].score - (1 - hits[0].distance)) < 1e-9
    assert [h.id for h in mem.recall("spill", k=3, where={"kind": "preference"})] == [c]
    assert [h.id for h in mem.recall("spill", k=3, where={"day": {"$gte": 20261120}})] == [a]
    assert mem.collection.metadata["hnsw:space"] == "cosine"
    # a second client on the same folder sees the same memories
    again = VectorMemory(tmp_path / "mem", embedding_function=FakeHashEmbedding())
    assert again.count() == 3 and again.get(b).text == "The spill kit is next to dock 3"
    assert mem.forget(c) == 1 and mem.count() == 2 and mem.get(c) is None
    assert mem.forget(where={"kind": "fact"}) == 1 and mem.count() == 1
    with pytest.raises(ValueError):
        mem.forget()
    with pytest.raises(ValueError):
        mem.remember("bad metadata", {"tags": ["a", "b"]})
    with pytest.raises(ValueError):
        mem.remember("   ")
    assert VectorMemory(tmp_path / "empty", embedding_function=FakeHashEmbedding()).recall("anything") == []


def test_build_context_policy(tmp_path):
    mem = VectorMemory(tmp_path / "mem", embedding_function=FakeHashEmbedding())
    spill = mem.remember("Oil spill at dock 3 last week", {"kind": "incident"})
    buf = ConversationBuffer(400, summariser=FakeSummariser(), system="You are a safety assistant.")
    buf.add_turn("How many pallets are in aisle 12?", "Four pallets.")
    ctx = build_context("What did I just ask?", buf, mem)
    assert ctx.route == "buffer" and ctx.hits == [] and ctx.recall_s == 0.0
    assert isinstance(ctx.messages[-1], HumanMessage) and ctx.messages[-1].content == "What did I just ask?"
    assert any(m.content == "How many pallets are in aisle 12?" for m in ctx.messages)
    ctx2 = build_context("Which dock had the oil spill last week?", buf, mem, max_distance=2.0)
    assert ctx2.route == "buffer+vector" and [h.id for h in ctx2.hits] == [spill]
    assert "Oil spill at dock 3" in ctx2.messages[0].content and ctx2.tokens > ctx.tokens
    assert ctx2.tokens == prompt_tokens(ctx2.messages)
    tight = build_context("Which dock had the oil spill last week?", buf, mem, max_distance=2.0, budget=ctx.tokens + 5)
    assert tight.hits == [] and tight.skipped  # over the budget: the memory is left out
    far = build_context("Which dock had the oil spill last week?", buf, mem, max_distance=0.0)
    assert far.hits == [] and far.skipped


def test_eval_set_is_labelled_in_the_books_vocabulary():
    from efsora_helpers.vocabulary import RULES

    data = load_eval_set()
    assert len(data["memories"]) >= 40 and len(data["queries"]) >= 25
    assert {m["kind"] for m in data["memories"]} == {"fact", "incident", "preference"}
    assert {m["rule"] for m in data["memories"] if "rule" in m} <= set(RULES)
    assert sum("where" in q for q in data["queries"]) >= 10  # filtered queries
    assert all(isinstance(m.get("day", 0), int) for m in data["memories"])  # chromadb ranges need numbers


# ---- the shipped MiniLM (slow: loads the embedding model) --------------------------------------

@pytest.mark.slow
def test_recall_on_the_labelled_set(tmp_path):
    data = load_eval_set()
    assert len(data["memories"]) >= 40 and len(data["queries"]) >= 25
    mem = VectorMemory(tmp_path / "mem")
    ids = load_memories(mem, data)
    plain, _ = retrieval_metrics(mem, data["queries"], ids)
    filtered, _ = retrieval_metrics(mem, data["queries"], ids, use_filters=True)
    assert plain["recall@3"] >= RECALL3_BAR, plain
    assert filtered["recall@3"] >= RECALL3_FILTERED_BAR, filtered
    assert filtered["mrr"] >= plain["mrr"]


CHILD = textwrap.dedent("""
    import json, sys
    from efsora_helpers.agent.memory import VectorMemory
    mem = VectorMemory(sys.argv[1])
    print(json.dumps({"count": mem.count(), "ids": {q: [h.id for h in mem.recall(q, k=2)] for q in json.loads(sys.argv[2])}}))
""")


@pytest.mark.slow
def test_memories_persist_across_processes(tmp_path):
    data = load_eval_set()
    mem = VectorMemory(tmp_path / "mem")
    load_memories(mem, data)
    queries = [q["query"] for q in data["queries"][:5]]
    here = {q: [h.id for h in mem.recall(q, k=2)] for q in queries}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "mem"), json.dumps(queries)], capture_output=True,
                         text=True, env=env, timeout=300, check=True)
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert there["count"] == len(data["memories"]) and there["ids"] == here
