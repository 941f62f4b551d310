"""Which isolation the sandbox can get on this machine, found once per process by trying it.

Strongest (needs root and util-linux `unshare` and `setpriv`; used whenever it works):

    unshare --mount --net --ipc --pid --fork --kill-child --mount-proc --
        python -c INIT     # root, PID 1 of the new namespaces: mounts a private /tmp, hides the
                           # project, starts the runner, reaps, reports the exit status
        setpriv --reuid=65534 ... --no-new-privs --bounding-set=-all --
        python -c RUNNER   # uid 65534, no capabilities: runs main.py (+ tests)

- no network: a fresh network namespace has only a loopback device, and it is down;
- no files of the host's /tmp, /var/tmp, /dev/shm, /run/lock: each is a fresh tmpfs, /tmp
  (the working directory) capped at Limits.scratch_mb; the project checkout is covered by an
  empty read-only tmpfs, so even absolute paths to it find nothing;
- uid 65534 (nobody): the kernel does not enforce RLIMIT_NPROC for root, and root could undo
  every other restriction, so the code must not run as root;
- a PID namespace: when the run ends, its PID 1 exits and the kernel kills everything left,
  including processes that escaped our process group with setsid().

The interpreter is a *system* python usable by uid 65534 (here /usr/bin/python3): the
project's venv python resolves into /root/.pyenv, under /root (mode 0700). It runs with -S (no
site-packages), so only the stdlib is importable.

Fallbacks, each announced by one WARNING per process: without namespaces (not root, or
unshare refused) there is no network isolation and /tmp is shared with the host; when not root
the code also runs as the engine's own user, and could kill the init that reports on it.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

SANDBOX_UID = 65534  # nobody
SANDBOX_GID = 65534  # nogroup
SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
# -s/-S: no user or system site-packages. -P: the working directory is not on sys.path. -B: no
# .pyc files. Not -I: it implies -E, which would ignore PYTHONHASHSEED in the env we hand over;
# that env is built from scratch, so -E would protect nothing.
PYTHON_FLAGS = ("-s", "-S", "-P", "-B")


class SandboxUnavailable(RuntimeError):
    """No way to run sandboxed code here (e.g. no python the sandbox user can execute)."""


class Isolation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str  # interpreter for INIT and RUNNER
    namespaces: bool  # unshare: net + mount + pid + ipc namespaces
    sandbox_uid: int | None  # None: the code runs as the engine's own user
    unshare: str | None = None
    setpriv: str | None = None
    hidden_dirs: tuple[str, ...] = ()  # covered by an empty read-only tmpfs in the namespaces


_lock = threading.Lock()
_detected: Isolation | None = None


def detect_isolation() -> Isolation:
    """Probe once per process (about 0.1 s of subprocesses); later calls return the cached answer."""
    global _detected
    with _lock:
        if _detected is None:
            _detected = _probe()
        return _detected


def _probe() -> Isolation:
    is_root = os.geteuid() == 0
    setpriv = shutil.which("setpriv", path=SYSTEM_PATH)
    unshare = shutil.which("unshare", path=SYSTEM_PATH)
    drop = is_root and setpriv is not None
    python = _find_python(setpriv if drop else None)

    namespace_problem = _namespace_problem(is_root, unshare, drop, python)
    namespaces = namespace_problem is None
    if not namespaces:
        log.warning("network isolation unavailable: %s; sandboxed code can reach the network, "
                    "shares /tmp with the host and can read the project checkout",
                    namespace_problem)
    if not drop:
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:  # a uid without a passwd entry, common in containers
            user = f"uid {os.geteuid()}"
        why = "the engine is not root" if not is_root else "setpriv (util-linux) is missing"
        log.warning("sandboxed code runs as %r because %s: it can read and write whatever that "
                    "user can", user, why)
    return Isolation(python=python, namespaces=namespaces,
                     sandbox_uid=SANDBOX_UID if drop else None,
                     unshare=unshare if namespaces else None, setpriv=setpriv if drop else None,
                     hidden_dirs=_dirs_to_hide(python) if namespaces else ())


def _find_python(setpriv: str | None) -> str:
    """First interpreter that can run our init/runner as the sandbox user."""
    candidates = [os.path.join(sys.base_prefix, "bin", "python3"), os.path.realpath(sys.executable),
                  "/usr/bin/python3", "/usr/local/bin/python3"]
    tried: list[str] = []
    for candidate in dict.fromkeys(os.path.realpath(c) for c in candidates):
        if not os.path.isfile(candidate):
            continue
        # os.access as the sandbox uid: on some machines exec of a binary under an unreadable
        # dir (/root/.pyenv) "works" but starts a different interpreter; insist on a plain one.
        check = ("import builtins, ctypes, os, sys, traceback\n"
                 "assert os.access(sys.executable, os.R_OK | os.X_OK), sys.executable")
        command = [candidate, *PYTHON_FLAGS, "-c", check]
        if setpriv is not None:
            command = [setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_GID}",
                       "--clear-groups", "--", *command]
        probe = subprocess.run(command, capture_output=True, text=True, env={"PATH": SYSTEM_PATH},
                               cwd="/", timeout=30)
        if probe.returncode == 0:
            return candidate
        tried.append(f"{candidate}: {probe.stderr.strip()[-200:] or f'exit {probe.returncode}'}")
    who = f"uid {SANDBOX_UID}" if setpriv else "this user"
    raise SandboxUnavailable(f"no python 3.11+ that {who} can execute; tried: "
                             f"{'; '.join(tried) or 'none found'}. Install a system python "
                             "(e.g. apt-get install python3) usable by that user.")


def _namespace_problem(is_root: bool, unshare: str | None, drop: bool, python: str) -> str | None:
    if not is_root:
        return "the engine is not root (unshare needs CAP_SYS_ADMIN)"
    if unshare is None or not drop:
        return "util-linux unshare or setpriv is missing"
    # The same steps a run takes: all namespaces, then a tmpfs mount from python via libc.
    mount_tmp = ("import ctypes\n"
                 "libc = ctypes.CDLL(None, use_errno=True)\n"
                 "if libc.mount(b'sandbox-probe', b'/tmp', b'tmpfs', 0, b'size=1m'):\n"
                 "    raise OSError(ctypes.get_errno(), 'mount tmpfs on /tmp')")
    probe = subprocess.run([unshare, "--mount", "--net", "--ipc", "--pid", "--fork", "--kill-child",
                            "--mount-proc", "--", python, *PYTHON_FLAGS, "-c", mount_tmp],
                           capture_output=True, text=True, env={"PATH": SYSTEM_PATH}, cwd="/", timeout=30)
    if probe.returncode != 0:
        return f"'unshare' failed: {probe.stderr.strip()[-300:] or f'exit {probe.returncode}'}"
    return None


def _dirs_to_hide(python: str) -> tuple[str, ...]:
    # The project checkout (data, outputs, maybe credentials) is none of the code's business.
    # Only when it really is a checkout, and never a dir the interpreter lives in.
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or root == Path("/"):
        return ()
    if Path(python).resolve().is_relative_to(root):
        return ()
    return (str(root),)
