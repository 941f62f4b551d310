"""Hostile snippets against agents.tools.sandbox, each checked for the specific containment.

These run real sandboxes: they need what the sandbox's strongest isolation needs (root and
util-linux unshare/setpriv/mount, as on the engine's machines); the first test says so plainly
when that is missing instead of letting every other test fail obscurely.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

import agents
from agents.tools import Limits, RunResult, run_python
from agents.tools.sandbox_isolation import SANDBOX_UID, detect_isolation

PROJECT_ROOT = Path(agents.__file__).resolve().parents[1]
MARKER = "planted-secret-" + uuid.uuid4().hex


def run(code: str, *, tests: str | None = None, **limits) -> RunResult:
    return asyncio.run(run_python(code, tests=tests, limits=Limits(**limits)))


def sandbox_uid_processes() -> set[int]:
    pids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == SANDBOX_UID:
                    pids.add(int(entry.name))
            except FileNotFoundError:
                pass
    return pids


@pytest.fixture(autouse=True)
def contained_and_still_working():
    """After every hostile snippet: nothing of it still runs, and the sandbox still works."""
    before = sandbox_uid_processes()
    yield
    assert sandbox_uid_processes() - before == set()
    normal = run("print(6 * 7)")
    assert normal.ok and normal.stdout == "42\n", normal


@pytest.fixture
def planted_dir():
    """A root-owned dir the sandbox can see (under /run, not covered by its private mounts)
    holding a 0600 file."""
    directory = Path(tempfile.mkdtemp(dir="/run", prefix="sandbox-test-"))
    directory.chmod(0o755)
    secret = directory / "secret.txt"
    secret.write_text(MARKER)
    secret.chmod(0o600)
    yield directory
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()


def test_full_isolation_is_available_here():
    isolation = detect_isolation()
    assert isolation.namespaces, "these tests need root and util-linux unshare (see sandbox_isolation)"
    assert isolation.sandbox_uid == SANDBOX_UID
    result = run("import os; print(os.getuid(), os.getgid(), os.getgroups())")
    assert result.stdout == f"{SANDBOX_UID} 65534 []\n"
    assert result.network_isolated


def test_infinite_loop_is_stopped_by_the_wall_limit():
    result = run("while True: pass", wall_s=1.0, cpu_s=5)
    assert result.limit_hit == "wall_time"
    assert result.signal == "SIGKILL" and result.exit_code is None and not result.ok


def test_sleeping_forever_is_stopped_by_the_wall_limit():
    result = run("import time; time.sleep(1000)", wall_s=0.5)
    assert result.limit_hit == "wall_time" and result.failed_part == "main"


def test_busy_loop_is_stopped_by_the_cpu_limit():
    result = run("while True: pass", wall_s=30, cpu_s=1)
    assert result.limit_hit == "cpu_time" and result.signal == "SIGXCPU"


def test_ignoring_sigxcpu_still_ends_at_the_hard_cpu_limit():
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass"
    result = run(code, wall_s=30, cpu_s=1)
    assert result.limit_hit == "cpu_time" and result.signal == "SIGKILL"


def test_fork_bomb_is_refused_by_the_process_limit():
    result = run("import os\nwhile True: os.fork()")
    assert result.limit_hit == "processes"
    assert "BlockingIOError" in result.stderr
    # the autouse fixture checks that none of the forks survived


def test_thread_bomb_is_refused_by_the_process_limit():
    code = ("import threading, time\n"
            "while True: threading.Thread(target=time.sleep, args=(100,), daemon=True).start()")
    result = run(code)
    assert result.limit_hit == "processes"
    assert "can't start new thread" in result.stderr


def test_allocating_10_gb_hits_the_memory_limit():
    result = run("block = bytearray(10 * 1024 ** 3)")
    assert result.limit_hit == "memory" and result.exit_code == 1
    assert result.stderr.rstrip().endswith("MemoryError")


def test_writing_a_1_gb_file_hits_the_file_size_limit():
    code = ("with open('big.bin', 'wb') as f:\n"
            "    for _ in range(1024): f.write(b'x' * 1024 ** 2)")
    result = run(code, max_file_mb=16)
    assert result.limit_hit == "file_size"
    assert "[Errno 27] File too large" in result.stderr


def test_many_files_fill_only_the_private_scratch():
    code = ("for i in range(20):\n"
            "    with open(f'part{i}.bin', 'wb') as f:\n"
            "        for _ in range(15): f.write(b'x' * 1024 ** 2)")
    result = run(code, max_file_mb=16, scratch_mb=32)
    assert result.limit_hit == "file_size"
    assert "No space left on device" in result.stderr


def test_cannot_read_files_outside_scratch(planted_dir, tmp_path):
    hidden = tmp_path / "hidden.txt"  # the host's /tmp is not the sandbox's /tmp
    hidden.write_text(MARKER)
    hidden.chmod(0o644)
    code = f"""
for path in [{str(planted_dir / 'secret.txt')!r}, {str(hidden)!r}, '/etc/shadow', '/proc/1/environ']:
    try:
        print(path, 'READ', open(path).read())
    except OSError as exc:
        print(path, type(exc).__name__)
"""
    result = run(code)
    assert result.ok, result
    assert MARKER not in result.stdout + result.stderr
    assert f"{planted_dir / 'secret.txt'} PermissionError" in result.stdout
    assert f"{hidden} FileNotFoundError" in result.stdout
    assert "/etc/shadow PermissionError" in result.stdout
    assert "/proc/1/environ PermissionError" in result.stdout  # init is root


def test_cannot_write_outside_scratch(planted_dir, tmp_path):
    host_tmp_target = Path(f"/tmp/sandbox-escape-{uuid.uuid4().hex}")
    targets = {
        planted_dir / "escape.txt": "PermissionError",
        tmp_path / "escape.txt": "FileNotFoundError",
        # covered read-only, or (a checkout under /tmp) not there in the sandbox's private /tmp
        PROJECT_ROOT / f"escape-{uuid.uuid4().hex}.txt": ("OSError", "PermissionError",
                                                          "FileNotFoundError"),
        host_tmp_target: "WROTE",  # the sandbox's own /tmp, not the host's
    }
    code = f"""
for path in {[str(p) for p in targets]!r}:
    try:
        with open(path, 'w') as f:
            f.write('escaped')
        print(path, 'WROTE')
    except OSError as exc:
        print(path, type(exc).__name__, exc)
"""
    try:
        result = run(code)
        for path, outcome in targets.items():
            line = next(x for x in result.stdout.splitlines() if x.startswith(f"{path} "))
            assert line.split()[1] in ((outcome,) if isinstance(outcome, str) else outcome), line
            assert not path.exists(), f"the sandbox wrote {path} on the host"
    finally:
        for path in targets:
            path.unlink(missing_ok=True)


def test_project_is_invisible_and_cwd_is_private_scratch():
    code = f"""
import os
print(os.getcwd())
print(sorted(os.listdir('.')))
print(os.path.exists('pyproject.toml'), os.path.exists('agents'), os.path.exists('../agents'))
try:
    print(os.listdir({str(PROJECT_ROOT)!r}))
except OSError as exc:  # a checkout under /tmp is simply absent from the private /tmp
    print(type(exc).__name__)
"""
    result = run(code)
    lines = result.stdout.splitlines()
    assert lines[:3] == ["/tmp", "['main.py']", "False False False"]
    assert lines[3] in ("[]", "FileNotFoundError", "PermissionError"), lines[3]


def test_scratch_dir_is_removed_even_after_a_timeout(tmp_path, monkeypatch):
    scratch_parent = tmp_path / "scratch-parent"
    scratch_parent.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_parent))
    assert run("open('left-behind.txt', 'w').write('x')").ok
    assert run("import time; time.sleep(100)", wall_s=0.5).limit_hit == "wall_time"
    assert list(scratch_parent.iterdir()) == []


def test_no_network_even_to_the_hosts_loopback():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2)
    print('CONNECTED')
except OSError as exc:
    print('refused', exc.errno)
"""
        result = run(code)
        assert result.network_isolated
        assert result.stdout == "refused 101\n"  # ENETUNREACH: only a down loopback in there
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_spawned_shell_is_as_contained_as_the_code(planted_dir):
    secret = planted_dir / "secret.txt"
    code = f"""
import subprocess
shell = subprocess.run(['sh', '-c', 'id -u; cat {secret}; mount -t tmpfs x /mnt; echo done'],
                       capture_output=True, text=True)
print(shell.stdout)
print(shell.stderr)
"""
    result = run(code)
    assert result.stdout.startswith(f"{SANDBOX_UID}\n")
    assert MARKER not in result.stdout
    assert "Permission denied" in result.stdout
    assert "must be superuser" in result.stdout  # no capabilities left, and no-new-privs


def test_cannot_kill_the_engine_or_see_its_processes():
    code = """
import os, signal
try:
    os.kill(os.getppid(), signal.SIGKILL)
except OSError as exc:
    print('parent', os.getppid(), type(exc).__name__)
try:
    os.kill(-1, signal.SIGKILL)
except OSError as exc:
    print('everyone', type(exc).__name__)
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
print(pids[0], len(pids), os.getpid() in pids)
print('survived')
"""
    result = run(code)
    lines = result.stdout.splitlines()
    assert lines[0] == "parent 1 PermissionError"  # our parent is the namespace's root init
    assert lines[1] == "everyone ProcessLookupError"  # nothing it may signal but itself
    assert lines[2] == "1 2 True"  # its own PID namespace: just init (PID 1) and itself
    assert lines[3] == "survived" and result.ok


def test_cannot_raise_its_own_limits():
    code = """
import resource
for limit in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC):
    try:
        resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print('RAISED', limit)
    except ValueError as exc:
        print('refused', exc)
block = bytearray(1024 ** 3)
"""
    result = run(code, memory_mb=256)
    assert result.stdout.count("refused not allowed to raise maximum limit") == 3
    assert result.limit_hit == "memory"


def test_cannot_become_root_again():
    code = """
import os
for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0])):
    try:
        call()
        print('ROOT')
    except PermissionError:
        print('refused')
"""
    result = run(code)
    assert result.stdout == "refused\nrefused\nrefused\n"


def test_flooding_stdout_is_cut_at_the_output_limit():
    result = run("import sys\nfor _ in range(100): sys.stdout.write('x' * 1024 ** 2)")
    assert result.limit_hit == "output" and result.signal == "SIGKILL"
    assert 0 < len(result.stdout.encode()) <= Limits().max_output_bytes


def test_flooding_stderr_is_cut_too():
    result = run("import sys\nwhile True: sys.stderr.write('y' * 4096)", max_output_bytes=1000)
    assert result.limit_hit == "output"
    assert result.stderr == "y" * 1000


def test_segfault_is_reported_not_suffered():
    result = run("import ctypes\nctypes.string_at(0)")
    assert result.signal == "SIGSEGV" and result.exit_code is None
    assert result.limit_hit is None and not result.ok


def test_background_children_die_when_the_code_exits():
    code = """
import os, subprocess
subprocess.Popen(['sleep', '100'])
subprocess.Popen(['setsid', 'sleep', '100'])  # escapes our process group, not the namespace
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', '100'])
    os._exit(0)
print('spawned')
"""
    result = run(code)
    assert result.ok and result.stdout == "spawned\n"
    # the autouse fixture asserts that no process of the sandbox uid is left


def test_engine_environment_does_not_leak(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", MARKER)
    result = run("import os; print(sorted(os.environ.items()))")
    assert MARKER not in result.stdout
    assert result.stdout == ("[('HOME', '/tmp'), ('LANG', 'C.UTF-8'), ('PATH', '/usr/bin:/bin'), "
                             "('PYTHONDONTWRITEBYTECODE', '1'), ('PYTHONHASHSEED', '0')]\n")


def test_tests_mode_passes_a_correct_solution():
    solution = "def add(a, b):\n    return a + b\nprint('defined')"
    tests = "assert add(1, 2) == 3\ndef test_negative():\n    assert add(-1, -1) == -2"
    result = run(solution, tests=tests)
    assert result.ok and result.failed_part is None and result.stdout == "defined\n"


def test_tests_mode_reports_a_failing_assertion():
    result = run("def add(a, b):\n    return a - b", tests="assert add(1, 2) == 3, 'add is wrong'")
    assert not result.ok and result.failed_part == "tests" and result.exit_code == 1
    assert "AssertionError: add is wrong" in result.stderr
    assert 'File "test_main.py", line 1' in result.stderr


def test_tests_mode_calls_test_functions():
    result = run("def add(a, b):\n    return a + b", tests="def test_wrong():\n    assert add(2, 2) == 5")
    assert result.failed_part == "tests" and "in test_wrong" in result.stderr


def test_tests_mode_reports_a_crash_in_main():
    result = run("raise ValueError('broken solution')", tests="assert True")
    assert result.failed_part == "main" and "ValueError: broken solution" in result.stderr


@pytest.mark.parametrize("shortcut", [
    "import os\ndef add(a, b):\n    return 0\nos._exit(0)",  # exit before the tests run
    "import sys\ndef add(a, b):\n    sys.exit(0)",  # exit from inside the tests
])
def test_tests_mode_is_not_fooled_by_exiting_early(shortcut):
    result = run(shortcut, tests="assert add(1, 2) == 3")
    assert not result.ok and result.failed_part is not None
