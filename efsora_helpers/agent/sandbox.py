"""Sandboxes for the agent's file and code tools: one root folder, and a separate, limited process.

**Files** (:class:`FileSandbox`): every path is relative to one root folder. A path is refused
before anything is opened when it is absolute, contains ``..``, a NUL byte or a ``~``; then it is
resolved and must still be inside the root (this catches a symlink planted inside the root that
points out). The file is then opened by walking the path one folder at a time from a descriptor of
the root with ``O_NOFOLLOW`` (``openat``), so a symlink swapped in between the check and the open,
a symlinked parent folder, a device file, a FIFO or a hard link to a file elsewhere is refused too.
Reads and writes have a size limit.

**Code** (:func:`run_python`): the code runs in a new ``python -I`` process, in a fresh folder inside
the workspace, with several layers, each reported in the result:

- ``rlimits``: CPU seconds, address space, file size, open files, processes (``resource``).
- ``timeout``: a wall-clock limit; the whole process group is killed (``SIGKILL``).
- ``audit hook``: a :func:`sys.addaudithook` hook installed in the child before the code runs refuses
  sockets, processes (``fork``/``exec``/``system``/``subprocess``), ``ctypes``, and file access outside
  the folder (reads of Python's own installation excepted). A hook lives in the same interpreter
  as the code it watches: it stops mistakes and the obvious attacks, it is *not* a security
  boundary against a determined attacker (CPython's documentation says so).
- ``network namespace`` (``unshare --net`` as root, or inside an unprivileged user namespace where
  the kernel allows one): the process has no network interface but a loopback that is down. A
  kernel boundary.
- ``mount namespace + chroot`` and ``unprivileged uid`` (root only): the process sees only Python's
  installation (read-only), ``/usr`` (read-only) and its own folder (a size-limited tmpfs whose
  files are copied back to the run folder afterwards), and runs as a fresh unprivileged uid (one
  per run, with no account, like ``nobody`` but not shared) with no new privileges, so
  ``/etc/passwd`` does not exist for it and the process limit is enforced (the kernel does not
  apply ``RLIMIT_NPROC`` to root; a uid of its own means another run's processes do not count
  against it). Kernel boundaries too. A ``PID namespace`` ends every process the program started
  when it ends.

Where the kernel layers are not available (no root, no ``unshare``), the code still runs with the
first three and the result says so. A container, gVisor or a microVM (Firecracker) is the
production answer; this is the teaching-sized version of the same layering.
Taught in ``notebooks/agent/02_tools.ipynb``.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_READ_BYTES = 256 * 1024
MAX_WRITE_BYTES = 256 * 1024
MAX_LIST_ENTRIES = 500


class SandboxError(PermissionError):
    """A request the sandbox refuses; the message says which rule it broke."""


# ---------------------------------------------------------------------------------------- files


class FileSandbox:
    """File access confined to one root folder.

    >>> box = FileSandbox("/tmp/ws/files")          # doctest: +SKIP
    >>> box.write("notes/a.txt", "hello"); box.read("notes/a.txt")  # doctest: +SKIP
    """

    def __init__(self, root: str | Path, *, max_read_bytes: int = MAX_READ_BYTES,
                 max_write_bytes: int = MAX_WRITE_BYTES):
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        if root.is_symlink():
            raise SandboxError(f"the sandbox root {root} is a symlink")
        self.root = root.resolve()
        self.max_read_bytes = max_read_bytes
        self.max_write_bytes = max_write_bytes

    # -- checks -------------------------------------------------------------------------------

    def parts(self, path: str) -> list[str]:
        """The path's components after the lexical rules; raises :class:`SandboxError`."""
        if not isinstance(path, str):
            raise SandboxError("the path must be a string")
        if "\x00" in path:
            raise SandboxError("the path contains a NUL byte")
        if path.startswith(("/", "\\")) or os.path.isabs(path) or (len(path) > 1 and path[1] == ":"):
            raise SandboxError(f"absolute paths are refused: {path!r}; give a path inside the sandbox folder")
        if path.startswith("~"):
            raise SandboxError(f"home-relative paths are refused: {path!r}")
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise SandboxError(f"'..' is refused: {path!r} would leave the sandbox folder")
        if len(parts) > 32:
            raise SandboxError("the path is too deep")
        # Resolved, it must still be inside the root: a symlink inside the root pointing out fails here.
        resolved = (self.root.joinpath(*parts)).resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise SandboxError(f"{path!r} resolves outside the sandbox folder (a symlink?)")
        return parts

    def _open_dir(self, parts: list[str], create: bool = False) -> int:
        """A descriptor of the folder ``parts`` inside the root, walked with O_NOFOLLOW."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.root, flags)
        try:
            for i, part in enumerate(parts):
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                try:
                    nxt = os.open(part, flags, dir_fd=fd)
                except OSError as exc:
                    where = "/".join(parts[: i + 1])
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        kind = "a symlink" if _is_link(fd, part) else "not a folder"
                        raise SandboxError(f"{where!r} is {kind}; symlinks are refused") from None
                    if exc.errno == errno.ENOENT:
                        raise FileNotFoundError(f"no folder {where!r} in the sandbox") from None
                    raise
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _open_file(self, path: str, flags: int, mode: int = 0o644) -> int:
        parts = self.parts(path)
        if not parts:
            raise SandboxError("a file path is needed, not the sandbox folder itself")
        creating = bool(flags & os.O_CREAT)
        dfd = self._open_dir(parts[:-1], create=creating)
        try:
            # Look before opening: opening a device or a FIFO can itself have effects.
            try:
                st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise SandboxError(f"{path!r} is a symlink; symlinks are refused")
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    raise SandboxError(f"{path!r} is not a regular file (device, FIFO or socket files are refused)")
            except FileNotFoundError:
                pass
            try:
                fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP or (exc.errno == errno.ENXIO and _is_link(dfd, parts[-1])):
                    raise SandboxError(f"{path!r} is a symlink; symlinks are refused") from None
                if exc.errno == errno.ENXIO:
                    raise SandboxError(f"{path!r} is not a regular file (device, FIFO or socket files are refused)") from None
                if exc.errno == errno.ENOENT:
                    raise FileNotFoundError(f"no file {path!r} in the sandbox") from None
                if exc.errno == errno.EISDIR:
                    raise IsADirectoryError(f"{path!r} is a folder; use list_files") from None
                raise
        finally:
            os.close(dfd)
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise IsADirectoryError(f"{path!r} is a folder; use list_files")
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SandboxError(f"{path!r} is not a regular file (device, FIFO or socket files are refused)")
        if st.st_nlink > 1:
            os.close(fd)
            raise SandboxError(f"{path!r} has {st.st_nlink} hard links; a hard-linked file may be a file "
                               "outside the sandbox, so it is refused")
        return fd

    # -- operations ---------------------------------------------------------------------------

    def read(self, path: str) -> str:
        """The text of a file inside the root (UTF-8, undecodable bytes replaced)."""
        fd = self._open_file(path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > self.max_read_bytes:
                raise SandboxError(f"{path!r} is {size} bytes; the read limit is {self.max_read_bytes}")
            data = f.read(self.max_read_bytes + 1)
        if len(data) > self.max_read_bytes:  # grew after the check
            raise SandboxError(f"{path!r} is over the read limit of {self.max_read_bytes} bytes")
        return data.decode("utf-8", errors="replace")

    def write(self, path: str, content: str) -> int:
        """Write text to a file inside the root (folders created); returns the bytes written."""
        data = content.encode("utf-8")
        if len(data) > self.max_write_bytes:
            raise SandboxError(f"the content is {len(data)} bytes; the write limit is {self.max_write_bytes}")
        # No O_TRUNC: truncate only after the checks, or a hard link to a file elsewhere would be
        # emptied before it is refused.
        fd = self._open_file(path, os.O_WRONLY | os.O_CREAT)
        with os.fdopen(fd, "wb") as f:
            f.truncate(0)
            f.write(data)
        return len(data)

    def list(self, path: str = ".") -> list[dict]:
        """Entries of a folder inside the root: name, kind (file, folder, symlink, other), size."""
        dfd = self._open_dir(self.parts(path))
        out = []
        try:
            for name in sorted(os.listdir(dfd))[:MAX_LIST_ENTRIES]:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                kind = ("symlink" if stat.S_ISLNK(st.st_mode) else "folder" if stat.S_ISDIR(st.st_mode)
                        else "file" if stat.S_ISREG(st.st_mode) else "other")
                out.append({"name": name, "kind": kind, "bytes": st.st_size if kind == "file" else None})
        finally:
            os.close(dfd)
        return out


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


# ----------------------------------------------------------------------------------------- code

UID_RANGE = (200_000, 300_000)  # per-run uids: no account, no files of their own outside the run


def _run_uid() -> int:
    import secrets

    return UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])

# Runs inside the child before the user's code: limits, then the audit hook, then the code.
# Reads its settings from argv[1] (JSON). Imports nothing the hook would refuse later.
_LAUNCHER = r'''
import json, os, posix, resource, sys, types
cfg = json.loads(sys.argv[1])
for name, value in cfg["rlimits"].items():
    lim = getattr(resource, name)
    hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU at the soft limit, SIGKILL a second later
    resource.setrlimit(lim, (value, hard))
BLOCKED_EVENTS = frozenset({
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg",
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "subprocess.Popen", "pty.spawn",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata", "ctypes.addressof",
    "ctypes.string_at", "ctypes.wstring_at", "ctypes.create_string_buffer",
    "os.link", "os.symlink", "os.chown", "os.setxattr", "os.removexattr", "sys.setprofile", "sys.settrace",
})
BLOCKED_MODULES = ("socket", "_socket", "ssl", "_ssl", "subprocess", "_posixsubprocess", "ctypes", "_ctypes",
                   "multiprocessing", "_multiprocessing", "pty", "urllib.request", "http.client", "ftplib",
                   "smtplib", "telnetlib", "requests", "httpx", "urllib3", "cffi", "_cffi_backend")
# event -> how many leading arguments are paths
PATH_EVENTS = {"os.mkdir": 1, "os.remove": 1, "os.rmdir": 1, "os.rename": 2, "os.replace": 2, "os.chmod": 1,
               "os.utime": 1, "os.truncate": 1, "os.listdir": 1, "os.scandir": 1, "os.chdir": 1, "shutil.rmtree": 1}
WRITE_EVENTS = frozenset({"os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.replace", "os.chmod", "os.utime",
                          "os.truncate", "shutil.rmtree", "os.chdir"})


def _resolve(p, _d=(posix.getcwd, posix.lstat, posix.readlink, OSError, PermissionError)):
    # Like os.path.realpath, but built only from C functions captured here: code that patches
    # os or posixpath cannot make the hook see a different path than the kernel opens.
    getcwd, lstat, readlink, oserror, refuse = _d
    if not p.startswith("/"):
        p = getcwd() + "/" + p
    parts = [x for x in p.split("/") if x and x != "."]
    out, links, missing = [], 0, False
    while parts:
        name = parts.pop(0)
        if name == "..":
            if out:
                out.pop()
            continue
        out.append(name)
        if missing:
            continue
        try:
            mode = lstat("/" + "/".join(out)).st_mode
        except oserror:
            missing = True  # not there (yet): the rest is plain text
            continue
        if mode & 0o170000 == 0o120000:
            links += 1
            if links > 40:
                raise refuse("sandbox: too many symlinks")
            target = readlink("/" + "/".join(out))
            out.pop()
            if target.startswith("/"):
                out = []
            parts = [x for x in target.split("/") if x and x != "."] + parts
    return "/" + "/".join(out)


def _hook(event, args, _c=(os.path.realpath(cfg["work"]), tuple(os.path.realpath(p) for p in cfg["readable"]),
                           BLOCKED_EVENTS, BLOCKED_MODULES, PATH_EVENTS.copy(), WRITE_EVENTS,
                           os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND),
          _f=(_resolve, posix.fspath, posix.lstat, isinstance, bytes, int, str, PermissionError, ImportError,
              OSError, types.FunctionType, type, any)):
    # Every name below is an argument with a default, captured when the launcher ran: replacing a
    # global, a builtin or a module attribute afterwards does not change what the hook does, and
    # replacing its defaults or code is refused (object.__setattr__ on functions).
    work, readable, blocked_events, blocked_modules, path_events, write_events, write_flags = _c
    resolve, fspath, lstat, isinst, _bytes, _int, _str, refuse, refuse_import, oserror, function, typ, some = _f
    if event in blocked_events:
        raise refuse(f"sandbox: {event} is not allowed in run_python")
    if event == "object.__setattr__":
        if typ(args[0]) is function and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
            raise refuse(f"sandbox: changing a function's {args[1]} is not allowed in run_python")
        return
    if event == "import":
        module = args[0]
        if some(module == m or module.startswith(m + ".") for m in blocked_modules):
            raise refuse_import(f"sandbox: import of {module} is not allowed in run_python")
        return
    if event == "open":
        paths, write = args[:1], bool((args[1] and some(c in args[1] for c in "wax+"))
                                      or (args[2] and args[2] & write_flags))
    elif event in path_events:
        paths, write = args[:path_events[event]], event in write_events
    else:
        return
    for path in paths:
        if path is None or isinst(path, _int):  # a descriptor: it was checked when it was opened
            continue
        p = fspath(path)
        if isinst(p, _bytes):
            p = p.decode("utf-8", "surrogateescape")
        if not p.startswith("/") and ".." in p.split("/"):
            # A relative path may be meant for a dir_fd the hook cannot see: no climbing out.
            raise refuse(f"sandbox: {event} with '..' in a relative path is refused: {p}")
        real = resolve(p)
        if real == work or real.startswith(work + "/"):
            continue
        if not write and some(real == r or real.startswith(r + "/") for r in readable):
            try:
                is_dir = lstat(real).st_mode & 0o170000 == 0o040000
            except oserror:
                is_dir = False
            if not (is_dir and event == "open"):  # no descriptor of a folder outside (a dir_fd to write through)
                continue
        raise refuse(f"sandbox: {event} outside the sandbox folder is refused: {p}")


for name in list(sys.modules):
    if any(name == m or name.startswith(m + ".") for m in BLOCKED_MODULES):
        del sys.modules[name]
os.chdir(cfg["work"])
readable = tuple(os.path.realpath(p) for p in cfg["readable"])
sys.path[:] = [p for p in sys.path if any(os.path.realpath(p).startswith(r) for r in readable)]
if cfg.get("hook", True):
    sys.addaudithook(_hook)
del cfg, name, lim, hard, value, readable
__code = open("main.py").read()
__g = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
exec(compile(__code, "main.py", "exec"), __g)
'''


@dataclass
class RunResult:
    """What ``run_python`` returns: the outputs (truncated), how it ended, and which layers applied."""

    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    signal: str | None = None  # e.g. SIGKILL (timeout, CPU hard limit) or SIGXCPU
    truncated: bool = False
    layers: list[str] = field(default_factory=list)
    folder: str = ""
    uid: int | None = None  # the uid the program ran as (None: this process's own)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Limits:
    cpu_s: int = 5
    wall_s: float = 10.0
    memory_mb: int = 512
    file_mb: int = 16
    max_processes: int = 64  # counts threads too; only enforced for a non-root uid
    open_files: int = 64
    output_bytes: int = 8000  # returned per stream
    disk_mb: int = 64  # the folder's size (a tmpfs) where the kernel layers are available

    def rlimits(self) -> dict[str, int]:
        return {"RLIMIT_CPU": self.cpu_s, "RLIMIT_AS": self.memory_mb * 2**20, "RLIMIT_FSIZE": self.file_mb * 2**20,
                "RLIMIT_NPROC": self.max_processes, "RLIMIT_NOFILE": self.open_files, "RLIMIT_CORE": 0}


def _python_roots() -> list[str]:
    """Folders Python needs to start and import its standard library and installed packages."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return sorted({os.path.realpath(p) for p in roots})


@functools.lru_cache(maxsize=1)
def kernel_isolation() -> tuple[str, ...]:
    """Which kernel layers work on this machine: probed once per process by running ``true`` in them."""
    if os.name != "posix" or shutil.which("unshare") is None:
        return ()
    layers: list[str] = []
    try:
        if _net_prefix():
            layers.append("network namespace")
        if os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("chroot") and subprocess.run(
                ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c", "mount --bind -o ro /usr /mnt 2>/dev/null || "
                 "mount -t tmpfs none /mnt"], capture_output=True, timeout=10).returncode == 0:
            layers.append("mount namespace + chroot")
    except (OSError, subprocess.SubprocessError):
        pass
    return tuple(layers)


@functools.lru_cache(maxsize=1)
def _net_prefix() -> tuple[str, ...]:
    """The ``unshare`` command line that gives a process its own empty network namespace here.

    Root: ``unshare --net``. Another user: a user namespace first (``--user --map-root-user``),
    where the kernel allows unprivileged user namespaces. Empty when neither works."""
    for prefix in (("unshare", "--net", "--"), ("unshare", "--user", "--map-root-user", "--net", "--")):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            return ()
    return ()


def _chroot_script(root: Path, work: Path, python: str, launcher_args: list[str], disk_mb: int, uid: int) -> str:
    """Shell run as root inside new namespaces: bind-mount a minimal tree, then chroot and drop to ``uid``.

    The program's folder is a tmpfs of ``disk_mb`` (a disk quota: it cannot fill the real disk);
    its files are copied into ``work`` when the program ends (not when it is killed by the timeout)."""
    q = shlex.quote
    lines = ["set -e", f"R={q(str(root))}"]
    # /usr read-only (the dynamic loader and libc); lib/bin as the usual merged-/usr symlinks.
    lines.append('mkdir -p "$R/usr" "$R/dev" "$R/sandbox" && mount --bind -o ro /usr "$R/usr"')
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            lines.append(f'ln -sfn {q(os.readlink(f"/{link}"))} "$R/{link}"')
        elif os.path.isdir(f"/{link}"):
            lines.append(f'mkdir -p "$R/{link}" && mount --bind -o ro /{link} "$R/{link}"')
    for prefix in _python_roots():
        if not prefix.startswith("/usr/") and prefix != "/usr":
            lines.append(f'mkdir -p "$R"{q(prefix)} && mount --bind -o ro {q(prefix)} "$R"{q(prefix)}')
    for dev in ("null", "zero", "urandom"):
        lines.append(f'touch "$R/dev/{dev}" && mount --bind /dev/{dev} "$R/dev/{dev}"')
    lines.append(f'mount -t tmpfs -o size={int(disk_mb)}m,mode=0700,uid={uid},gid={uid} tmpfs "$R/sandbox"')
    lines.append(f'W={q(str(work))} && cp "$W/main.py" "$R/sandbox/main.py" && chown {uid}:{uid} "$R/sandbox/main.py"')
    lines.append('mount -o remount,bind,ro "$R/usr" 2>/dev/null || true')
    cmd = [shutil.which("chroot") or "/usr/sbin/chroot", str(root), "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
           "--no-new-privs", python, "-I", "/launcher.py", *launcher_args]
    # Not exec: sh stays PID 1 of the new PID namespace, so Python is an ordinary process there
    # (PID 1 ignores signals it has no handler for, SIGXCPU included). When PID 1 ends, the
    # kernel kills everything left in the namespace, even a child that called setsid().
    lines.append(" ".join(q(c) for c in cmd) + " && rc=0 || rc=$?")
    # Copy the folder back as it is (symlinks stay symlinks: the file tools refuse them anyway).
    lines.append('cp -a "$R/sandbox/." "$W/" 2>/dev/null || true')
    lines.append("exit $rc")
    return "\n".join(lines)


def run_python(code: str, workspace: str | Path, *, limits: Limits | None = None,
               isolation: str = "auto", audit_hook: bool = True) -> RunResult:
    """Run ``code`` in a separate, limited Python process in a fresh folder under ``workspace/runs``.

    ``isolation``: ``auto`` uses every kernel layer this machine offers (:func:`kernel_isolation`);
    ``basic`` uses only rlimits, timeout and the audit hook. ``audit_hook=False`` leaves the hook out,
    to show what the other layers stop on their own (a lesson, not a setting for real use).
    """
    limits = limits or Limits()
    runs = Path(workspace) / "runs"
    _prune(runs)
    run_dir = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    work = run_dir / "work"
    work.mkdir(parents=True)
    (work / "main.py").write_text(code, encoding="utf-8")
    out_path, err_path = run_dir / "stdout.txt", run_dir / "stderr.txt"
    kernel = kernel_isolation() if isolation == "auto" else ()
    uid = None
    layers = ["rlimits", "timeout + process-group kill"] + (["audit hook"] if audit_hook else [])
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}  # nothing from the parent: no API keys, no PYTHONPATH
    python = sys.executable
    if "mount namespace + chroot" in kernel:
        root = run_dir / "root"
        root.mkdir()
        (root / "launcher.py").write_text(_LAUNCHER)
        cfg = {"rlimits": limits.rlimits(), "work": "/sandbox", "readable": _python_roots(), "hook": audit_hook}
        env.update(HOME="/sandbox", TMPDIR="/sandbox")
        uid = _run_uid()
        script = _chroot_script(root, work.resolve(), python, [json.dumps(cfg)], limits.disk_mb, uid)
        argv = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c", script]
        layers += ["network namespace", "mount namespace + chroot", "PID namespace", "unprivileged uid"]
        cwd = None
    else:
        launcher = run_dir / "launcher.py"
        launcher.write_text(_LAUNCHER)
        rlimits = limits.rlimits()
        if os.geteuid() == 0:
            del rlimits["RLIMIT_NPROC"]  # the kernel ignores it for root; the audit hook refuses fork
        else:  # the limit counts every task of this uid, so leave room for the ones already running
            rlimits["RLIMIT_NPROC"] += _tasks_of(os.geteuid())
        cfg = {"rlimits": rlimits, "work": str(work.resolve()), "readable": _python_roots(), "hook": audit_hook}
        env.update(HOME=str(work), TMPDIR=str(work))
        argv = [python, "-I", str(launcher), json.dumps(cfg)]
        if "network namespace" in kernel:
            argv = [*_net_prefix(), *argv]
            layers.append("network namespace")
        cwd = work
    t0 = time.perf_counter()
    timed_out = False
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd,
                                start_new_session=True, close_fds=True)
        try:
            proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            proc.wait()
    seconds = time.perf_counter() - t0
    _kill_group(proc.pid)  # anything the code left behind in its group
    stdout, t1 = _head(out_path, limits.output_bytes)
    stderr, t2 = _head(err_path, limits.output_bytes)
    code_ = proc.returncode
    sig = signal.Signals(-code_).name if code_ is not None and code_ < 0 else None
    if sig is None and code_ is not None and code_ > 128 and "mount namespace + chroot" in layers:
        try:  # the shell (PID 1 of the namespace) reports a child killed by signal N as 128 + N
            sig = signal.Signals(code_ - 128).name
            code_ = -(code_ - 128)  # as subprocess reports it in the other mode
        except ValueError:
            pass
    return RunResult(exit_code=code_, stdout=stdout, stderr=_clean_stderr(stderr), seconds=round(seconds, 3),
                     timed_out=timed_out, signal=sig, truncated=t1 or t2, layers=layers, folder=str(work), uid=uid)


KEEP_RUNS = 50  # run folders kept per workspace (newest first); older ones are deleted


def _prune(runs: Path, keep: int = KEEP_RUNS, min_age_s: float = 600.0) -> None:
    """Delete all but the newest ``keep`` run folders, never one younger than ``min_age_s`` (it may
    still be running in another process). The chroot's mount points live only in the run's own
    mount namespace, so here they are empty folders."""
    if not runs.is_dir():
        return
    folders = sorted((p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()), key=lambda p: p.name)
    now = time.time()
    for old in folders[:-keep] if len(folders) > keep else []:
        try:
            if now - old.stat().st_mtime > min_age_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def _tasks_of(uid: int) -> int:
    """Threads and processes this uid runs now (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    return count


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _head(path: Path, limit: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


def _clean_stderr(text: str) -> str:
    """Drop the launcher's frames from tracebacks: the user's code is ``main.py``."""
    lines = text.splitlines(keepends=True)
    out, skip = [], False
    for line in lines:
        if line.startswith('  File "') and "main.py" not in line and ("launcher.py" in line or "<string>" in line):
            skip = True
            continue
        if skip and line.startswith("    "):
            continue
        skip = False
        out.append(line)
    return "".join(out)
