"""The sandbox's first process: started by agents.tools.sandbox as `python -c <this file's text>`.

    python -c INIT STATUS_FD CHILD_ARGV...

With namespaces it is PID 1 of the sandbox's PID namespace and still root; the untrusted code
runs in a child that drops to the sandbox uid (CHILD_ARGV starts with setpriv). Being PID 1 is
what makes cleanup complete: when this process exits, the kernel kills every process left in
the namespace, including ones that called setsid() or double-forked.

Why a separate parent instead of running the code as PID 1 directly: the kernel drops signals
with a default action that are sent to a namespace's PID 1 (SIGXCPU, SIGTERM, ...), so the
untrusted code must not be PID 1 if rlimits and our reporting are to work. And because this
process is root, the sandboxed code (another uid) can neither signal it nor reach its file
descriptors through /proc, so the status it writes to STATUS_FD is one the code cannot forge.

Runs under the system interpreter with -S: stdlib only, and no imports from this project.
"""

import json
import os
import sys

# The runner's report pipe ("main" / "tests" lines) goes to the child under this placeholder,
# replaced by the real descriptor number after the pipe exists.
REPORT_FD_PLACEHOLDER = "{report_fd}"
# The runner's report is a few short lines; a longer one is hostile and cut here.
MAX_REPORT_BYTES = 4096


def main() -> None:
    status_fd = int(sys.argv[1])
    child_argv = sys.argv[2:]
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
        # As PID 1 we inherit every orphan; reaping them keeps zombies from counting against
        # RLIMIT_NPROC. The run is over when the child we started is over.
        reaped, wait_status, usage = os.wait4(-1, 0)
        if reaped == pid:
            break
    os.set_blocking(report_read, False)
    try:
        report = os.read(report_read, MAX_REPORT_BYTES)
    except BlockingIOError:
        report = b""
    status = {
        "wait_status": wait_status,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "report": report.decode("utf-8", errors="replace"),
    }
    os.write(status_fd, json.dumps(status).encode())


if __name__ == "__main__":
    main()
