"""The sandbox's first process: started by agents.tools.sandbox as `python -c <this file's text>`.

    python -c INIT STATUS_FD [SCRATCH SCRATCH_MB UID GID [HIDDEN_DIR...]] -- CHILD_ARGV...

With namespaces (the setup arguments given) it is PID 1 of the sandbox's PID namespace and
still root: it mounts the private filesystem (see sandbox_isolation), then starts the untrusted
code in a child that drops to the sandbox uid (CHILD_ARGV starts with setpriv). Being PID 1 is
what makes cleanup complete: when this process exits, the kernel kills every process left in
the namespace, including ones that called setsid() or double-forked.

Why a separate parent instead of running the code as PID 1 directly: the kernel drops signals
with a default action that are sent to a namespace's PID 1 (SIGXCPU, SIGTERM, ...), so the
untrusted code must not be PID 1 if rlimits and our reporting are to work. And because this
process is root, the sandboxed code (another uid) can neither signal it nor reach its file
descriptors through /proc, so the status it writes to STATUS_FD is one the code cannot forge.

Runs under the system interpreter with -S: stdlib only, and no imports from this project.
Imports are kept few: every millisecond of startup here is paid by every tool call.
"""

import os
import sys

# The runner's report pipe ("main" / "tests" lines) goes to the child under this placeholder,
# replaced by the real descriptor number after the pipe exists.
REPORT_FD_PLACEHOLDER = "{report_fd}"
# The runner's report is a few short lines; a longer one is hostile and cut here.
MAX_REPORT_BYTES = 4096
PR_SET_CHILD_SUBREAPER = 36
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
SIGKILL = 9  # not `import signal`: it pulls in enum


def _libc():
    import ctypes  # only when needed: it costs a few milliseconds of startup

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _private_filesystem(scratch: str, scratch_mb: str, uid: str, gid: str, *hidden_dirs: str) -> None:
    """Fresh tmpfs over the world-writable dirs and the hidden ones; the code's files go into
    the new /tmp, which becomes the working directory. One libc call per mount instead of one
    `mount` process each: that halves the sandbox's startup time."""
    ctypes, libc = _libc()

    def mount_tmpfs(target: str, options: str, flags: int = MS_NOSUID | MS_NODEV) -> None:
        if libc.mount(b"sandbox", target.encode(), b"tmpfs", flags, options.encode()) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot mount a tmpfs on {target}: {os.strerror(errno)}")

    # Read the files first: the scratch dir usually lives in the /tmp about to be covered.
    files = {}
    for name in os.listdir(scratch):
        with open(os.path.join(scratch, name), "rb") as f:
            files[name] = f.read()
    mount_tmpfs("/tmp", f"size={scratch_mb}m,mode=0700,uid={uid},gid={gid}")
    for shared in ("/var/tmp", "/dev/shm", "/run/lock"):
        if os.path.isdir(shared):
            mount_tmpfs(shared, "size=1m,mode=1777")
    for hidden in hidden_dirs:
        if os.path.isdir(hidden):
            mount_tmpfs(hidden, "size=4k,mode=0755", MS_RDONLY | MS_NOSUID | MS_NODEV)
    for name, data in files.items():  # root-owned, read-only to the code
        with open(os.path.join("/tmp", name), "wb") as f:
            f.write(data)
    os.chdir("/tmp")


def _children_of(parent: int) -> list[int]:
    children = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    # "pid (comm) state ppid ...": comm may contain spaces and parentheses
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[1]) == parent:
                children.append(int(name))
    return children


def _kill_adopted() -> None:
    # Killing a process reparents its children to us, so repeat until none are left.
    while children := _children_of(os.getpid()):
        for pid in children:
            try:
                os.kill(pid, SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while True:
                os.waitpid(-1, 0)
        except ChildProcessError:
            pass


def main() -> None:
    separator = sys.argv.index("--")
    status_fd, *setup = sys.argv[1:separator]
    status_fd = int(status_fd)
    child_argv = sys.argv[separator + 1:]
    in_pid_namespace = os.getpid() == 1  # then the kernel cleans up when we exit
    if setup:
        _private_filesystem(*setup)
    if not in_pid_namespace:
        # Become a child subreaper: processes the code leaves behind are reparented to us
        # instead of the system init, so _kill_adopted can end them.
        _, libc = _libc()
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            # The child must not hold the status pipe, or it could write a status of its own.
            os.close(status_fd)
            os.close(report_read)
            os.set_inheritable(report_write, True)
            argv = [arg.replace(REPORT_FD_PLACEHOLDER, str(report_write)) for arg in child_argv]
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(report_write)
    while True:
        # As PID 1 (or subreaper) we inherit every orphan; reaping them keeps zombies from
        # counting against RLIMIT_NPROC. The run is over when the child we started is over.
        reaped, wait_status, usage = os.wait4(-1, 0)
        if reaped == pid:
            break
    os.set_blocking(report_read, False)
    try:
        report = os.read(report_read, MAX_REPORT_BYTES)
    except BlockingIOError:
        report = b""
    if not in_pid_namespace:
        _kill_adopted()
    # "<wait status> <cpu seconds>\n<report>", parsed by sandbox._read_status (json would cost
    # more startup time than the rest of this file).
    cpu_s = usage.ru_utime + usage.ru_stime
    os.write(status_fd, f"{wait_status} {cpu_s!r}\n".encode() + report)


if __name__ == "__main__":
    main()
