"""Chapter 3's agent benchmark on another local model id (chapter 4's tuned model): one loopback
server per model id, rows labelled provider/model, the benchmark's --model/--precision checks, and
its summary per model (benchmarks/agent_patterns.py; notebooks/agent/05_patterns.ipynb).

Fakes, named as such: the server and provider classes are replaced so no model loads, and the
agent runs on chapter 3's fake chat model. The real runs are benchmarks/results/agent_patterns_tuned.csv.
"""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
from test_agent_patterns import FakeLoopingChatModel  # the patterns' fake model, shared, not copied

from efsora_helpers.llm import langchain
from efsora_helpers.llm.errors import UnknownModelError
from efsora_helpers.llm.local import MODEL_ID, TUNED_MODEL_ID
from efsora_helpers.paths import repo_root


class FakeProvider:
    """Stands in for LocalProvider: records the model id it was asked for, loads nothing."""

    def __init__(self, model: str = MODEL_ID):
        self.model_id = model


class FakeServer:
    """Stands in for LocalServer: serves its provider's model id on a made-up URL, starts nothing."""

    def __init__(self, provider):
        self.model_id = provider.model_id
        self.base_url = f"http://127.0.0.1:0/{provider.model_id}/v1"

    def start(self):
        return self

    def stop(self):
        pass


@pytest.fixture
def fake_servers(monkeypatch):
    from efsora_helpers.llm import local_provider, server

    monkeypatch.setattr(local_provider, "LocalProvider", FakeProvider)
    monkeypatch.setattr(server, "LocalServer", FakeServer)
    monkeypatch.setattr(langchain, "_servers", {})
    return langchain._servers


def test_one_server_per_local_model_id(fake_servers):
    base, tuned = langchain.local_server(), langchain.local_server(TUNED_MODEL_ID)
    assert (base.model_id, tuned.model_id) == (MODEL_ID, TUNED_MODEL_ID)
    assert langchain.local_server(MODEL_ID) is base and langchain.local_server(TUNED_MODEL_ID) is tuned
    chat = langchain.chat_model("local", TUNED_MODEL_ID)
    assert chat.model_name == TUNED_MODEL_ID and chat.openai_api_base == tuned.base_url


def test_an_unknown_local_model_fails_before_a_server_starts(fake_servers):
    with pytest.raises(UnknownModelError, match="smollm2-1b"):
        langchain.chat_model("local", "smollm2-1b")
    assert fake_servers == {}


def test_rows_name_the_model_when_one_is_given(tmp_path):
    from efsora_helpers.agent.evaluate import evaluate
    from efsora_helpers.agent.tasks import load_tasks

    task = load_tasks(ids=["calc_pallet_weight"])
    tuned = evaluate(task, ["react"], llm=FakeLoopingChatModel(calls=[]), provider="local", model=TUNED_MODEL_ID,
                     workspace_root=tmp_path, progress=False, max_steps=1)
    base = evaluate(task, ["react"], llm=FakeLoopingChatModel(calls=[]), provider="local",
                    workspace_root=tmp_path, progress=False, max_steps=1)
    assert tuned[0].row()["provider"] == f"local/{TUNED_MODEL_ID}" and base[0].row()["provider"] == "local"


def _benchmark():
    spec = importlib.util.spec_from_file_location("agent_patterns_bench", repo_root() / "benchmarks" / "agent_patterns.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--model", "smollm2-1b"], "unknown model"),
    (["--model", TUNED_MODEL_ID, "--precision", "int8"], "served at fp32"),
])
def test_benchmark_refuses_a_model_or_precision_it_cannot_serve(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        _benchmark().main([*argv, "--provider", "local", "--out", str(tmp_path / "x.csv")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_benchmark_summary_is_per_model_when_a_file_holds_two():
    from efsora_helpers.agent.evaluate import RESULT_COLUMNS

    rows = [{**dict.fromkeys(RESULT_COLUMNS, 0), "task_id": f"t{i}", "kind": "count", "pattern": "react",
             "provider": provider, "success": success}
            for provider, success in [("local/base", 0), ("local/tuned", 1)] for i in range(2)]
    table = _benchmark().summary_by_provider(pd.DataFrame(rows))
    assert table.loc[("local/base", "react"), "success_rate"] == 0.0
    assert table.loc[("local/tuned", "react"), "success_rate"] == 1.0
    one = _benchmark().summary_by_provider(pd.DataFrame(rows[:2]))
    assert list(one.index) == ["react"]
