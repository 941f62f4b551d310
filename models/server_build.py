"""Compile llama.cpp's `llama-server` once, from the same source as the pinned llama-cpp-python.

The llama-cpp-python sdist vendors llama.cpp (server sources included), so building the server
from it keeps the server and the in-process bindings on one llama.cpp version. The binary is
cached per (version, cpu|cuda, extra CMAKE_ARGS flags) under the user cache directory; a cold
CPU build takes ~7 min on 2 cores, later runs find it at once. A failed build keeps its log
(build.log in that directory) and quotes the first error from it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

# Keep equal to the llama-cpp-python pin in pyproject.toml (a test checks this).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
TARGETS = ("llama-server", "llama-bench")


class ServerBuildError(RuntimeError):
    """The llama-server binary is missing and could not be built."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agentinstruct-engine"


def file_key(path: Path) -> str:
    """What a cache entry derived from a large file is keyed by: its path, size and mtime (a
    rewritten file gets a new entry; hashing GGUFs on every run would cost seconds)."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


_CUDA_FLAG = re.compile(r"-DGGML_CUDA(?::BOOL)?=(\S*)", re.IGNORECASE)


def _cmake_env_args() -> list[str]:
    """CMAKE_ARGS, the variable llama-cpp-python's own build reads, as separate `-D...` flags
    (`-D NAME=V` joined into one)."""
    words = shlex.split(os.environ.get("CMAKE_ARGS", ""))
    args: list[str] = []
    for word in words:
        if args and args[-1] == "-D":
            args[-1] += word
        else:
            args.append(word)
    return args


def cmake_args() -> list[str]:
    """Extra flags for the server build from CMAKE_ARGS (e.g. `-DCMAKE_CUDA_ARCHITECTURES=90`),
    so the server is built like the bindings; GGML_CUDA among them is cuda_wanted()'s to read,
    and the build sets it from that."""
    return [a for a in _cmake_env_args() if not _CUDA_FLAG.fullmatch(a)]


def cuda_wanted() -> bool:
    """CUDA only where a GPU is really present: nvcc alone (as on CI) would mean a 30-min build.
    ENGINE_CUDA=1/0 decides first, then GGML_CUDA in CMAKE_ARGS (the guide's
    `CMAKE_ARGS=-DGGML_CUDA=on`), then whether nvidia-smi sees a GPU."""
    forced = os.environ.get("ENGINE_CUDA")
    if forced is not None:
        return forced == "1"
    for arg in reversed(_cmake_env_args()):
        if flag := _CUDA_FLAG.fullmatch(arg):
            return flag.group(1).upper() in ("ON", "1", "TRUE", "YES", "Y")
    if not (shutil.which("nvcc") and shutil.which("nvidia-smi")):
        return False
    probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return probe.returncode == 0 and "GPU" in probe.stdout


def binary_dir(cuda: bool | None = None, args: list[str] | None = None) -> Path:
    """Where the build for (cuda, extra cmake flags) lives; `args` defaults to cmake_args()."""
    flavour = "cuda" if (cuda_wanted() if cuda is None else cuda) else "cpu"
    if extra := cmake_args() if args is None else args:  # another configuration, another binary
        flavour += "-" + hashlib.sha256("\0".join(extra).encode()).hexdigest()[:8]
    return cache_root() / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}-{flavour}" / "bin"


def find_binary(name: str = "llama-server", cuda: bool | None = None,
                args: list[str] | None = None) -> Path | None:
    path = binary_dir(cuda, args) / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def ensure_binary(
    name: str = "llama-server", cuda: bool | None = None, log: Callable[[str], None] = print,
    args: list[str] | None = None,
) -> Path:
    """Return the cached binary, building it first if needed (serialized by a file lock).
    `args`: extra cmake flags, CMAKE_ARGS's by default ([] for the plain build)."""
    cuda = cuda_wanted() if cuda is None else cuda
    args = cmake_args() if args is None else args
    found = find_binary(name, cuda, args)
    if found:
        return found
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may have built it while we waited
        found = find_binary(name, cuda, args)
        if found:
            return found
        _build(cuda, args, log)
    found = find_binary(name, cuda, args)
    if not found:
        raise ServerBuildError(f"build finished but {name} is missing in "
                               f"{binary_dir(cuda, args)}")
    return found


def _sdist(log: Callable[[str], None]) -> Path:
    src_dir = cache_root() / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(src_dir.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"))
    if existing:
        return existing[0]
    log(f"downloading the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} source (llama.cpp inside)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(src_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(src_dir.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"))
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServerBuildError(
            f"could not fetch the llama.cpp source ({tail[0]}); connect to a package index once, "
            f"or put llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz into {src_dir}"
        )
    return found[0]


def _build(cuda: bool, args: list[str], log: Callable[[str], None]) -> None:
    if not shutil.which("cmake"):
        raise ServerBuildError("cmake is not installed; install cmake and a C++ compiler, "
                               "or pass --teacher-url to use a running server")
    sdist = _sdist(log)
    final = binary_dir(cuda, args)
    jobs = str(os.cpu_count() or 2)
    extra = " ".join(args)
    log(f"compiling llama-server ({'CUDA' if cuda else 'CPU'}{', ' + extra if extra else ''}) "
        f"once into {final} (~7 min on 2 cores for the CPU build, cached afterwards)")
    log_file = cache_root() / "build.log"  # outlives the build directory: read it on failure
    log_file.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root(), prefix="build-") as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        source = next(Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = Path(tmp) / "build"
        flags = [
            "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF",
            "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
            "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
            f"-DGGML_CUDA={'ON' if cuda else 'OFF'}",
            *args,  # last: a user's flag overrides ours
        ]
        _run(["cmake", "-S", str(source), "-B", str(build), *flags], log_file)
        _run(["cmake", "--build", str(build), "--config", "Release", "-j", jobs,
              "--target", *TARGETS], log_file)
        staged = Path(tmp) / "bin"
        staged.mkdir()
        for name in TARGETS:
            shutil.copy2(next(build.glob(f"**/bin/{name}")), staged / name)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)  # atomic: a half-built dir is never seen as done


def _run(cmd: list[str], log_file: Path) -> None:
    with open(log_file, "a") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise ServerBuildError(f"`{' '.join(cmd[:2])} …` failed: {first_error(log_file)} "
                               f"(whole log: {log_file})")


def first_error(log_file: Path) -> str:
    """The build log's first error and the lines under it: the cause. Its last lines only say
    that the step failed (seen: a CUDA toolkit without cuBLAS ended in "CMake Generate step
    failed", the missing CUDA::cublas was 20 lines above)."""
    lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("CMake Error") or " error:" in line or line.startswith("error:"):
            return " | ".join(x for x in lines[i:i + 6] if x)
    return " | ".join(x for x in lines[-5:] if x) or "no output"


if __name__ == "__main__":
    print(ensure_binary(log=lambda m: print(m, file=sys.stderr)))
