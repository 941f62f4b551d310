"""Runs the untrusted code inside the sandbox: started as `python -c <this file's text>`.

    python -c RUNNER REPORT_FD HAS_TESTS

Executes ./main.py as `__main__`, then (HAS_TESTS == "1") ./test_main.py in the same namespace,
then calls any test_* functions the tests defined. Exit status is non-zero when either part
raises. After each part completes it writes "main" / "tests" to REPORT_FD, so the engine can
tell which part failed, and so a `main.py` that calls os._exit(0) before the tests run is not
mistaken for passing tests.

The report is a guard against accidents and the obvious shortcut, not against deliberate
tampering: the untrusted code runs in this very process and could write to REPORT_FD itself.

Runs under the system interpreter with -S: stdlib only, and no imports from this project.
"""

import builtins
import os
import sys


def _fail(exc: BaseException) -> None:
    # os._exit skips the interpreter's own flush, so flush what the code printed first.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the code may have closed or replaced it
            pass
    import traceback  # here, not at the top: it doubles the interpreter's startup time

    # Skip our own frame so the traceback starts in the user's file, as `python main.py` would.
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
    try:
        sys.stderr.flush()
    finally:
        os._exit(1)


def main() -> None:
    report_fd = int(sys.argv[1])
    has_tests = sys.argv[2] == "1"
    # Processes the code spawns must not inherit the report pipe.
    os.set_inheritable(report_fd, False)
    # Read both files before the code runs: it may chdir or delete them.
    with open("main.py", encoding="utf-8") as f:
        main_source = f.read()
    tests_source = ""
    if has_tests:
        with open("test_main.py", encoding="utf-8") as f:
            tests_source = f.read()

    sys.argv = ["main.py"]
    # A real __main__ module, as `python main.py` has: pickle and multiprocessing look there.
    module = type(sys)("__main__")
    module.__file__ = "main.py"
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    namespace = module.__dict__
    try:
        exec(compile(main_source, "main.py", "exec"), namespace)
    except SystemExit as exc:
        # `sys.exit()` at the end of a script is normal; with tests we carry on to them.
        if exc.code not in (None, 0) or not has_tests:
            raise
    except BaseException as exc:
        _fail(exc)
    sys.stdout.flush()
    os.write(report_fd, b"main\n")
    if not has_tests:
        return

    before = set(namespace)
    try:
        exec(compile(tests_source, "test_main.py", "exec"), namespace)
        for name in sorted(set(namespace) - before):
            if name.startswith("test") and callable(namespace[name]):
                namespace[name]()
    except SystemExit as exc:
        # Any exit here, even sys.exit(0), means the tests did not all run: code under test that
        # exits when called must not count as passing.
        print(f"tests stopped early: SystemExit({exc.code!r})", file=sys.stderr)
        _fail(exc)
    except BaseException as exc:
        _fail(exc)
    sys.stdout.flush()
    os.write(report_fd, b"tests\n")


if __name__ == "__main__":
    main()
