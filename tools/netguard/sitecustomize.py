"""Network guard: log and block every non-loopback network attempt of this Python process.

Active only when ``EFSORA_NETGUARD_LOG`` names a log file; the test run and the book build put
this folder on ``PYTHONPATH`` so that every Python process they start (notebook kernels too)
loads it. Each attempt is appended to the log as one JSON line with the process, the notebook
(``EFSORA_NOTEBOOK``, set by the runners) and the call, then refused with ``OSError``, as a
closed network would. The run fails if the log is not empty. ``EFSORA_NETGUARD=log`` only logs.

It sees what goes through Python's ``socket`` module (``sys.audit`` events ``socket.getaddrinfo``,
``socket.connect``, ``socket.sendto``); a C library that opens its own sockets is not seen.
"""

import errno
import ipaddress
import json
import os
import socket
import sys
import time
import traceback

try:
    import fcntl
except ImportError:  # Windows: O_APPEND alone
    fcntl = None

_LOG = os.environ.get("EFSORA_NETGUARD_LOG")
_BLOCK = os.environ.get("EFSORA_NETGUARD", "block") != "log"
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}


def _is_local_host(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").split("%")[0].lower()
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == socket.gethostname().lower()  # this machine's own name, from /etc/hosts
    return ip.is_loopback or ip.is_unspecified


def _record(event: str, target: str) -> None:
    frames = traceback.extract_stack()[:-3]
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "pid": os.getpid(),
        "notebook": os.environ.get("EFSORA_NOTEBOOK"),
        "argv": sys.argv[:3],
        "event": event,
        "target": target,
        "stack": [f"{f.filename}:{f.lineno} {f.name}" for f in frames[-6:]],
    }
    line = (json.dumps(entry) + "\n").encode("utf-8")
    # Parallel test workers and their kernels share one log: each line goes in whole, under an
    # exclusive lock, at the end (O_APPEND), so no two processes interleave or overwrite.
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)  # releases the lock


def _hook(event: str, args) -> None:
    if event == "socket.getaddrinfo":
        host, port = args[0], args[1]
    elif event in ("socket.connect", "socket.sendto"):
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return  # unix sockets, netlink: local by construction
        host, port = address[0], address[1]
    else:
        return
    if _is_local_host(host):
        return
    _record(event, f"{host}:{port}")
    if _BLOCK:
        raise OSError(errno.ENETUNREACH, f"blocked by the efsora network guard: {event} {host}:{port}")


if _LOG:
    sys.addaudithook(_hook)
