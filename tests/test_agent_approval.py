"""Human approval, SQLite checkpoints and time travel (efsora_helpers.agent.approval).

Most tests use :func:`approval_graph` (no model: the route is forced by the input) with a stand-in
tool registry, ``fake_registry``, whose side-effect tools append to ``actions.jsonl`` in a scratch
workspace like the real warehouse tools do, so "was the action taken?" is a file check.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from efsora_helpers.agent import approval as ap

ROOT = Path(__file__).resolve().parents[1]
STOP = {"task": "Stop the forklift line in zone B", "tool": "stop_forklift_line",
        "arguments": {"zone": "B", "reason": "pallet in the forklift lane"}}


def fake_registry(workspace: str | Path):
    """A stand-in for ``warehouse_tools``: two side-effect tools that log to actions.jsonl, one read-only."""
    from efsora_helpers.llm import ToolRegistry

    ws = Path(workspace)
    ws.mkdir(parents=True, exist_ok=True)
    reg = ToolRegistry()

    def log(entry):
        with open(ws / "actions.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    @reg.tool(side_effects=True)
    def stop_forklift_line(zone: str, reason: str) -> dict:
        """Stop the forklift line in one zone."""
        log({"tool": "stop_forklift_line", "zone": zone, "reason": reason})
        return {"stopped": zone}

    @reg.tool(side_effects=True)
    def send_incident_report(title: str, body: str, severity: str = "medium") -> dict:
        """Send an incident report."""
        log({"tool": "send_incident_report", "title": title})
        return {"sent": title}

    @reg.tool
    def calculator(expression: str) -> str:
        """Evaluate arithmetic."""
        return "4"

    return reg


def fake_graph(*, checkpointer=None, workspace: str):
    """Builder for the child process of the restart test (importable as tests.test_agent_approval)."""
    return ap.approval_graph(fake_registry(workspace), checkpointer=checkpointer)


def actions(ws: Path) -> list[dict]:
    path = ws / "actions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def setup_graph(scratch_dir):
    ws = scratch_dir / "ws"
    with ap.sqlite_checkpointer(scratch_dir / "checkpoints.sqlite") as saver:
        yield fake_graph(checkpointer=saver, workspace=str(ws)), ws, scratch_dir / "checkpoints.sqlite"


def test_pause_shows_request_then_approve_acts(setup_graph):
    graph, ws, _ = setup_graph
    run = ap.drive(graph, STOP, "t1", "ask")
    assert run.status == "interrupted"
    state = graph.get_state(ap.thread_config("t1"))
    assert state.next == ("approve",)  # paused inside the approval node, before the action
    [req] = run.waiting
    assert (req.tool, req.arguments["zone"], req.asked_by) == ("stop_forklift_line", "B", "planner")
    assert "zone B" in req.why and "stop_forklift_line" in ap.show(req)
    assert actions(ws) == []  # nothing happened yet
    out = ap.resume(graph, "t1", approved=True, reason="supervisor on site agrees")
    assert actions(ws) == [{"tool": "stop_forklift_line", "zone": "B", "reason": "pallet in the forklift lane"}]
    assert out["decision"]["approved"] and "stopped" in out["answer"]
    assert graph.get_state(ap.thread_config("t1")).next == ()
    with pytest.raises(ValueError, match="not waiting"):
        ap.resume(graph, "t1", approved=True)


def test_rejected_action_is_not_taken(setup_graph):
    graph, ws, _ = setup_graph
    ap.drive(graph, STOP, "t2", "ask")
    out = ap.resume(graph, "t2", approved=False, reason="line is needed for the evening shift")
    assert actions(ws) == []
    assert "not approved" in out["answer"] and "not taken" in out["answer"]
    assert out["log"][-2:] == ["act: skipped", "respond"]


def test_policies(setup_graph):
    graph, ws, _ = setup_graph
    policy = ap.tool_policy({"send_incident_report": "auto", "stop_forklift_line": "ask"}, default="deny")
    report = {"task": "File an incident report", "tool": "send_incident_report",
              "arguments": {"title": "pallet in lane", "body": "zone B", "severity": "high"}}
    assert ap.drive(graph, report, "p1", policy).status == "done"  # approved without a person
    assert ap.drive(graph, STOP, "p2", policy).status == "interrupted"  # needs a person
    assert [a["tool"] for a in actions(ws)] == ["send_incident_report"]
    done = ap.drive(graph, None, "p2", policy, person=ap.scripted_person({"stop_forklift_line": False}))
    assert done.status == "done" and [a["tool"] for a in actions(ws)] == ["send_incident_report"]
    assert not done.decisions[0][1]["approved"]
    # read-only tools never pause
    assert ap.drive(graph, {"task": "2+2", "tool": "calculator", "arguments": {"expression": "2+2"}},
                    "p3", "deny").status == "done"
    # a veto check runs before the rules
    veto = ap.tool_policy({"stop_forklift_line": "auto"},
                          check=lambda r: None if r.arguments.get("zone") else "no zone")
    vetoed = ap.drive(graph, {**STOP, "arguments": {"zone": "", "reason": "x"}}, "p4", veto)
    assert vetoed.decisions[0][1] == {"approved": False, "reason": "rejected by policy: no zone"}
    with pytest.raises(ValueError, match="unknown approval policy"):
        ap.as_policy("maybe")
    nobody = ap.terminal_person(input_fn=lambda prompt: (_ for _ in ()).throw(EOFError()), out=lambda s: None)
    request = ap.ApprovalRequest("stop_forklift_line", {"zone": "B"}, "planner", "test", "i1")
    assert nobody(request) == {"approved": False, "reason": "rejected: nobody at the terminal"}


def test_history_replay_and_fork_keep_the_original(setup_graph):
    graph, ws, _ = setup_graph
    ap.drive(graph, STOP, "t3", "auto")
    original = graph.get_state(ap.thread_config("t3"))
    table = ap.history(graph, "t3")
    assert list(table["next"]) == ["__start__", "plan", "approve", "act", "respond", "(end)"]
    assert set(table["branch"]) == {0} and table["head"].all()

    # fork: the checkpoint before approval, with another zone
    before = ap.find(graph, "t3", next_node="approve")
    new_config = ap.fork(graph, before.config, {"arguments": {"zone": "C", "reason": "pallet in the forklift lane"}})
    assert ap.checkpoint_id(new_config) != ap.checkpoint_id(before)
    branch = ap.drive(graph, None, new_config, "auto")
    assert branch.values["arguments"]["zone"] == "C"
    assert [a["zone"] for a in actions(ws)] == ["B", "C"]
    # the original run is still there, unchanged
    again = graph.get_state(original.config)
    assert again.values == original.values and again.values["arguments"]["zone"] == "B"
    table = ap.history(graph, "t3")
    assert set(table["branch"]) == {0, 1}
    assert (table.loc[table["source"] == "update", "parent"] == ap.checkpoint_id(before)[-8:]).all()
    assert not table.loc[table["branch"] == 0, "head"].iloc[-1]  # the newest path is the fork now

    # replay from the checkpoint before `plan`: the nodes re-run and the interrupt fires again
    start = ap.find(graph, "t3", next_node="plan", branch_head=False)
    replayed = ap.replay(graph, start.config, "ask")
    assert replayed.status == "interrupted" and replayed.waiting[0].arguments["zone"] == "B"
    table = ap.history(graph, "t3")
    assert "fork" in set(table["source"]) and table["branch"].nunique() == 3
    with pytest.raises(ValueError, match="checkpoint_id"):
        ap.fork(graph, ap.thread_config("t3"), {})


def test_plot_checkpoint_tree(setup_graph):
    import matplotlib

    matplotlib.use("Agg")
    graph, _, _ = setup_graph
    ap.drive(graph, STOP, "t4", "auto")
    before = ap.find(graph, "t4", next_node="approve")
    ap.drive(graph, None, ap.fork(graph, before.config, {"arguments": {"zone": "C", "reason": "r"}}), "deny")
    ax = ap.plot_checkpoint_tree(ap.history(graph, "t4"))
    assert len(ax.collections) >= 8


@pytest.mark.slow
def test_resume_in_a_new_process_sees_the_same_state(setup_graph):
    graph, ws, db = setup_graph
    ap.drive(graph, STOP, "t5", "ask")
    here = ap.fingerprint(graph, "t5")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    child = ap.resume_in_new_process(db, "t5", True, reason="approved after a restart",
                                     builder="tests.test_agent_approval:fake_graph",
                                     builder_kwargs={"workspace": str(ws)}, env=env)
    assert child["pid"] != os.getpid()
    assert child["before"] == here  # same checkpoint id, same next node, same values
    assert child["waiting"][0]["tool"] == "stop_forklift_line"
    assert child["after"]["next"] == [] and child["after"]["checkpoint_id"] != here["checkpoint_id"]
    assert [a["zone"] for a in actions(ws)] == ["B"]
    # and this process reads what the other one wrote
    assert ap.fingerprint(graph, "t5") == child["after"]
    assert sys.executable  # the child ran under this interpreter


# --------------------------------------------------------------------------- on the chapter's agent


class FakeForcedRouteModel:
    """Built lazily (langchain imports): a FAKE chat model that always routes to the action."""

    def __new__(cls, calls: dict):
        from langchain_core.language_models.chat_models import BaseChatModel
        from langchain_core.messages import AIMessage
        from langchain_core.outputs import ChatGeneration, ChatResult
        from langchain_core.utils.function_calling import convert_to_openai_tool

        class _Fake(BaseChatModel):
            calls: dict = {}

            @property
            def _llm_type(self) -> str:
                return "fake-forced-route"

            def bind_tools(self, tools, *, tool_choice=None, **kw):
                return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kw)

            def _generate(self, messages, stop=None, run_manager=None, tools=None, tool_choice=None, **kw):
                tools = {t["function"]["name"]: t["function"] for t in tools or []}

                def call(name, args):
                    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"fake_{name}"}])

                if "NextStep" in tools:
                    routes = tools["NextStep"]["parameters"]["properties"]["route"].get("enum", [])
                    msg = call("NextStep", {"route": "action" if "action" in routes else "respond"})
                elif "Verdict" in tools:
                    msg = call("Verdict", {"verdict": "done"})
                elif tools:
                    name = next((n for n in tools if n in self.calls), next(iter(tools)))
                    msg = call(name, self.calls.get(name, {}))
                else:
                    facts = messages[-1].content.split("Facts:\n", 1)[-1].rsplit("\nAnswer:", 1)[0]
                    msg = AIMessage(content=f"(fake answer) {facts}")
                msg.usage_metadata = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
                return ChatResult(generations=[ChatGeneration(message=msg)])

        return _Fake(calls=calls)


TASK = "Stop the forklift line in zone B: a pallet blocks the forklift lane."


def fake_agent(*, checkpointer=None, workspace: str):
    """The chapter's agent on the real warehouse tools with the fake model (also the child's builder)."""
    from efsora_helpers.agent.graph import build_agent
    from efsora_helpers.agent.tools import warehouse_tools

    llm = FakeForcedRouteModel({"stop_forklift_line": {"zone": "B", "reason": "a pallet blocks the lane"}})
    return build_agent(llm=llm, tools=warehouse_tools(workspace), checkpointer=checkpointer, approve="ask")


def stops(ws: Path) -> list[str]:
    return [a["arguments"]["zone"] for a in actions(ws) if a["tool"] == "stop_forklift_line"]


@pytest.fixture
def agent_setup(scratch_dir):
    ws = scratch_dir / "ws"
    with ap.sqlite_checkpointer(scratch_dir / "agent.sqlite") as saver:
        yield fake_agent(checkpointer=saver, workspace=str(ws)), ws, scratch_dir / "agent.sqlite"


def test_agent_pauses_then_approve_or_reject(agent_setup):
    from efsora_helpers.agent.graph import resume_agent, run_agent

    agent, ws, _ = agent_setup
    run = run_agent(TASK, thread_id="a1", graph=agent)
    assert run.status == "interrupted"
    assert agent.get_state(ap.thread_config("a1")).next == ("action",)
    [req] = ap.pending(agent, "a1")
    assert req.tool == "stop_forklift_line" and req.arguments["zone"] == "B" and req.task == TASK
    assert stops(ws) == []
    done = resume_agent("a1", {"approved": True, "reason": "ok"}, graph=agent)
    assert done.status == "done" and stops(ws) == ["B"]
    run_agent(TASK, thread_id="a2", graph=agent)
    no = resume_agent("a2", {"approved": False, "reason": "line needed"}, graph=agent)
    assert stops(ws) == ["B"] and no.rejected and "not taken" in no.answer


def test_agent_policy_and_fork(agent_setup):
    from efsora_helpers.agent.state import initial_state

    agent, ws, _ = agent_setup
    policy = ap.tool_policy({"stop_forklift_line": "ask"}, default="deny")
    run = ap.drive(agent, initial_state(TASK), "f1", policy, person=ap.scripted_person({"stop_forklift_line": True}))
    assert run.status == "done" and stops(ws) == ["B"]
    end = agent.get_state(ap.thread_config("f1"))
    before = ap.find(agent, "f1", next_node="action")
    call = dict(before.values["pending_call"])
    new = ap.fork(agent, before.config, {"pending_call": {**call, "arguments": {**call["arguments"], "zone": "C"}}})
    branch = ap.drive(agent, None, new, "deny")
    assert branch.status == "done" and stops(ws) == ["B"]  # the fork's action was asked for again, and denied
    assert branch.decisions[0][0].arguments["zone"] == "C"
    assert agent.get_state(end.config).values == end.values  # the original branch is intact
    assert ap.history(agent, "f1")["branch"].nunique() == 2


@pytest.mark.slow
def test_agent_resumes_in_a_new_process(agent_setup):
    from efsora_helpers.agent.graph import run_agent

    agent, ws, db = agent_setup
    run_agent(TASK, thread_id="r1", graph=agent)
    here = ap.fingerprint(agent, "r1")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    child = ap.resume_in_new_process(db, "r1", True, builder="tests.test_agent_approval:fake_agent",
                                     builder_kwargs={"workspace": str(ws)}, env=env)
    assert child["before"] == here and child["pid"] != os.getpid()
    assert child["after"]["next"] == [] and stops(ws) == ["B"]
    assert ap.fingerprint(agent, "r1") == child["after"]


def test_approval_graph_on_the_warehouse_tools(scratch_dir):
    from efsora_helpers.agent.tools import ACTIONS_LOG

    ws = scratch_dir / "ws"
    with ap.sqlite_checkpointer(scratch_dir / "c.sqlite") as saver:
        graph = ap.approval_graph(checkpointer=saver, workspace=ws)  # the real warehouse_tools
        assert ap.history(graph, "none").empty and ap.pending(graph, "none") == []
        with pytest.raises(LookupError):
            ap.find(graph, "none", next_node="approve")
        report = {"task": "File an incident report", "tool": "send_incident_report",
                  "arguments": {"title": "Pallet in lane", "body": "A pallet blocks lane B.", "severity": "high"}}
        assert ap.drive(graph, report, "w1", "ask").status == "interrupted"
        assert not (ws / ACTIONS_LOG).exists()
        out = ap.resume(graph, "w1", approved=True)
        assert "outbox/" in out["result"] and len(list((ws / "outbox").iterdir())) == 1
        assert json.loads((ws / ACTIONS_LOG).read_text().splitlines()[0])["tool"] == "send_incident_report"


def test_changes_is_robust():
    import numpy as np

    assert ap.changes({"a": [1]}, {"a": [1, 2], "b": None}) == "a +1 [2]"
    assert ap.changes({}, {"x": np.zeros(3)}).startswith("x=")
    assert ap.changes({"x": np.zeros(3)}, {"x": np.ones(3)}).startswith("x=")
