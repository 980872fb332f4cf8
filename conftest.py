"""Test-session wiring shared by tests/ and the notebooks (executed by nbval in lax mode).

* The network guard is on for the whole session and every kernel; a non-empty log fails the run.
* Each notebook's kernel knows its notebook (``EFSORA_NOTEBOOK``) so the guard can name it.
* Each notebook must finish inside its time budget (``metadata.efsora.time_budget_s``).
* Per-notebook test times go to ``_build/reports/test_notebook_times.json`` and per-file times
  (every test file and notebook that ran whole, merged with earlier runs) to
  ``test_file_times.json`` beside it;
  ``EFSORA_TEST_REPORTS`` moves both (the harness tests' child sessions use it).

In parallel (pytest-xdist, ``make test`` runs ``-n 2 --dist loadfile``):

* each file runs whole on one worker (a notebook keeps its one kernel), handed out longest first
  by ``efsora_helpers.book.longest_first`` so the workers finish together. It reads this
  machine's last ``test_file_times.json``, else the committed times: the cost report for
  notebooks and ``tests/durations.json`` for test files (copy a full run's ``tests/`` entries
  there when a test file becomes much slower or faster);
* every worker and kernel runs on one thread (``book.SINGLE_THREAD_VARIABLES``);
* the workers append to the controller's one guard log, and the controller reports it and merges
  the workers' notebook times.

Without ``-n`` everything runs in this process, one file after another, as before.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

import pytest

from efsora_helpers.book import longest_first, single_threaded, time_budget
from efsora_helpers.env import prepare_offline_environment
from efsora_helpers.netguard import activate_in_process, format_entries, read_log

ROOT = Path(__file__).resolve().parent
LOG = Path(os.environ.get("EFSORA_NETGUARD_LOG") or ROOT / "_build" / "netguard" / "test.jsonl")
REPORTS = Path(os.environ.get("EFSORA_TEST_REPORTS") or ROOT / "_build" / "reports")
WORKER_TIMES = "efsora_notebook_times"  # the key a worker sends its notebook times under

_started: dict[str, float] = {}
_finished: dict[str, float] = {}  # notebook (relative to ROOT) -> seconds from first setup to last call
_file_seconds: dict[str, float] = defaultdict(float)  # test file or notebook -> summed phase durations


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _is_parallel(config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and config.getoption("dist", "no") != "no"


def pytest_configure(config):
    prepare_offline_environment()
    if not os.environ.get("EFSORA_NETGUARD_SESSION"):  # the outermost pytest owns the log
        os.environ["EFSORA_NETGUARD_SESSION"] = "1"
        LOG.parent.mkdir(parents=True, exist_ok=True)
        LOG.write_text("")
    if _is_parallel(config) and not _is_worker(config):
        single_threaded(os.environ)  # before the workers start: they and their kernels inherit it
    activate_in_process(LOG)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole files, longest first, for ``--dist loadfile`` and for plain ``-n`` (``load``, which
    would scatter a notebook's cells over kernels that do not share its variables)."""
    if config.getoption("dist") not in ("load", "loadfile"):
        return None  # another scheduler asked for by name
    from xdist.scheduler import LoadFileScheduling

    class LongestFileFirst(LoadFileScheduling):
        # xdist queues files in collection order (or by test count) and hands each free worker
        # the next one; reordering the queue once, before the first hand-out, is all it takes.
        _ordered = False

        def _assign_work_unit(self, node):
            if not self._ordered:
                order = longest_first(list(self.workqueue), ROOT, REPORTS / "test_file_times.json")
                self.workqueue = OrderedDict((scope, self.workqueue[scope]) for scope in order)
                self._ordered = True
            super()._assign_work_unit(node)

    return LongestFileFirst(config, log)


def _notebook_of(item) -> Path | None:
    path = Path(str(item.fspath))
    return path if path.suffix == ".ipynb" else None


def _relative(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    nb = _notebook_of(item)
    if nb is None:
        os.environ.pop("EFSORA_NOTEBOOK", None)  # a worker runs test files after notebooks too
    else:
        key = str(nb)
        if key not in _started:
            _started[key] = time.perf_counter()
            os.environ["EFSORA_NOTEBOOK"] = _relative(nb)
        # The remaining budget bounds each cell, so an over-long notebook stops, not hangs.
        remaining = time_budget(nb) - (time.perf_counter() - _started[key])
        item.config.option.nbval_cell_timeout = max(1, int(remaining) + 1)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    nb = _notebook_of(item)
    if nb is None or call.when != "call":
        return
    report = outcome.get_result()
    elapsed = time.perf_counter() - _started[str(nb)]
    _finished[_relative(nb)] = elapsed
    budget = time_budget(nb)
    if elapsed > budget and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{nb.name} exceeded its time budget: {elapsed:.1f} s > {budget:.0f} s "
            "(metadata.efsora.time_budget_s; make the CI profile smaller or raise the budget with a reason)"
        )


def pytest_runtest_logreport(report):
    # On the controller this sees every worker's reports; on a worker its own (not written).
    _file_seconds[report.nodeid.split("::", 1)[0]] += report.duration


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Controller: a worker finished; keep its notebook times (a crashed worker sends none)."""
    _finished.update(getattr(node, "workeroutput", {}).get(WORKER_TIMES, {}))


def _ran_whole_files(session, exitstatus) -> bool:
    """Whether each file that ran ran all its tests, so its time is worth keeping for scheduling
    (one test of a slow file, remembered as the file's time, would start that file last)."""
    opt = session.config.option
    chosen = opt.keyword or opt.markexpr or getattr(opt, "deselect", None)
    chosen = chosen or any("::" in arg for arg in session.config.args)  # a test, not a file
    stopped_early = opt.maxfail and exitstatus != pytest.ExitCode.OK
    return not chosen and not stopped_early and exitstatus != pytest.ExitCode.INTERRUPTED


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if _is_worker(config):  # the controller writes the reports and reads the guard log
        config.workeroutput[WORKER_TIMES] = dict(_finished)
        return
    if _finished:
        _write_json(REPORTS / "test_notebook_times.json", {k: round(v, 1) for k, v in _finished.items()})
    if _file_seconds and _ran_whole_files(session, exitstatus):
        path = REPORTS / "test_file_times.json"
        times = json.loads(path.read_text()) if path.exists() else {}  # a partial run keeps the rest
        times.update({k: round(v, 1) for k, v in _file_seconds.items()})
        _write_json(path, times)
    entries = read_log(LOG)
    if entries:
        config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"NETWORK GUARD: {len(entries)} non-loopback attempt(s) during the run:\n{format_entries(entries)}",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
