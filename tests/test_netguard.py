"""The network guard catches real attempts, names the notebook, and lets loopback through."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import nbformat
import pytest

from efsora_helpers.netguard import guarded_environment, main as check_log, read_log

ATTEMPT = """
import socket
try:
    with socket.socket() as sock:
        sock.settimeout(2)
        sock.connect(("203.0.113.7", 80))  # TEST-NET-3, never routable
except OSError as exc:
    print("refused:", exc)
try:
    socket.getaddrinfo("example.com", 443)
except OSError as exc:
    print("refused:", exc)
"""


def test_guard_logs_and_refuses_a_real_attempt(tmp_path):
    log = tmp_path / "guard.jsonl"
    result = subprocess.run(
        [sys.executable, "-c", ATTEMPT], env=guarded_environment(log), capture_output=True, text=True, timeout=60
    )
    assert result.stdout.count("blocked by the efsora network guard") == 2, result.stdout + result.stderr
    entries = read_log(log)
    assert [(e["event"], e["target"]) for e in entries] == [
        ("socket.connect", "203.0.113.7:80"),
        ("socket.getaddrinfo", "example.com:443"),
    ]
    assert check_log([str(log)]) == 1


def test_guard_allows_loopback(tmp_path):
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    code = (
        "import urllib.request;"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/').read().decode());"
        f"print(urllib.request.urlopen('http://localhost:{port}/').read().decode())"
    )
    log = tmp_path / "guard.jsonl"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], env=guarded_environment(log), capture_output=True, text=True, timeout=60
        )
    finally:
        server.shutdown()
    assert result.stdout.split() == ["hello", "hello"], result.stderr
    assert read_log(log) == []
    assert check_log([str(log)]) == 0


def test_processes_appending_at_once_leave_whole_lines(tmp_path):
    """Parallel test workers and their kernels share one log: no line lost or torn."""
    log = tmp_path / "guard.jsonl"
    many = (
        "import socket\n"
        "for i in range(200):\n"
        "    try:\n"
        "        socket.getaddrinfo(f'host{i}.example.com', 443)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", many], env=guarded_environment(log)) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    entries = read_log(log)  # json.loads of each line: a torn line would raise here
    assert len(entries) == 800
    assert len({e["pid"] for e in entries}) == 4


def test_this_test_session_and_its_children_are_guarded():
    # An attempt here would fail the whole session, so check the wiring instead.
    import os

    from efsora_helpers.netguard import guard_dir

    assert os.environ.get("EFSORA_NETGUARD_LOG")
    assert str(guard_dir()) in os.environ["PYTHONPATH"].split(os.pathsep)
    assert _audit_hooks(), "the guard module is not loaded in this process"


def _audit_hooks():
    # CPython exposes no list of audit hooks; the guard module keeps its hook as `_hook`.
    import sys

    module = sys.modules.get("_efsora_netguard")
    return [module._hook] if module else []


@pytest.mark.slow
def test_guard_names_the_notebook_and_fails_the_session(notebook_factory, child_pytest, scratch_dir):
    nb = notebook_factory(
        [
            ("import efsora_helpers as eh\nctx = eh.setup(quiet=True)", (), None),
            ("n = 1", ("parameters",), None),
            ("import socket\ntry:\n    socket.getaddrinfo('example.org', 80)\nexcept OSError:\n    pass", (), None),
        ]
    )
    path = scratch_dir / "reaches_out.ipynb"
    nbformat.write(nb, path)
    log = scratch_dir / "guard.jsonl"
    result = child_pytest(path, log)
    assert result.returncode != 0, "a session with a network attempt must fail"
    assert "NETWORK GUARD" in result.stdout
    entries = read_log(log)
    assert len(entries) == 1 and entries[0]["target"] == "example.org:80"
    assert entries[0]["notebook"].endswith("reaches_out.ipynb"), json.dumps(entries)
