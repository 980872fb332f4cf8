"""Test-session wiring shared by tests/ and the notebooks (executed by nbval in lax mode).

* The network guard is on for the whole session and every kernel; a non-empty log fails the run.
* Each notebook's kernel knows its notebook (``EFSORA_NOTEBOOK``) so the guard can name it.
* Each notebook must finish inside its time budget (``metadata.efsora.time_budget_s``).
* Per-notebook test times go to ``_build/reports/test_notebook_times.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from efsora_helpers.book import time_budget
from efsora_helpers.env import prepare_offline_environment
from efsora_helpers.netguard import activate_in_process, format_entries, read_log

ROOT = Path(__file__).resolve().parent
LOG = Path(os.environ.get("EFSORA_NETGUARD_LOG") or ROOT / "_build" / "netguard" / "test.jsonl")

_started: dict[str, float] = {}
_finished: dict[str, float] = {}


def pytest_configure(config):
    prepare_offline_environment()
    if not os.environ.get("EFSORA_NETGUARD_SESSION"):  # the outermost pytest owns the log
        os.environ["EFSORA_NETGUARD_SESSION"] = "1"
        LOG.parent.mkdir(parents=True, exist_ok=True)
        LOG.write_text("")
    activate_in_process(LOG)


def _notebook_of(item) -> Path | None:
    path = Path(str(item.fspath))
    return path if path.suffix == ".ipynb" else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    nb = _notebook_of(item)
    if nb is not None:
        key = str(nb)
        if key not in _started:
            _started[key] = time.perf_counter()
            try:
                os.environ["EFSORA_NOTEBOOK"] = nb.relative_to(ROOT).as_posix()
            except ValueError:
                os.environ["EFSORA_NOTEBOOK"] = str(nb)
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
    _finished[str(nb)] = elapsed
    budget = time_budget(nb)
    if elapsed > budget and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{nb.name} exceeded its time budget: {elapsed:.1f} s > {budget:.0f} s "
            "(metadata.efsora.time_budget_s; make the CI profile smaller or raise the budget with a reason)"
        )


def pytest_sessionfinish(session, exitstatus):
    book_notebooks = ROOT / "notebooks"
    times = {
        Path(k).relative_to(ROOT).as_posix(): round(v, 1)
        for k, v in _finished.items()
        if Path(k).is_relative_to(book_notebooks)
    }
    if times:  # the book's notebooks only; scratch notebooks of the harness tests are not reported
        out = ROOT / "_build" / "reports" / "test_notebook_times.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")
    entries = read_log(LOG)
    if entries:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"NETWORK GUARD: {len(entries)} non-loopback attempt(s) during the run:\n{format_entries(entries)}",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
