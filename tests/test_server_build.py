"""How the llama-server build is configured (CMAKE_ARGS, ENGINE_CUDA), what a failed build says,
and that a failed CUDA build falls back to the CPU build instead of the one-slot in-process
teacher."""

from __future__ import annotations

import pytest

from models import factory, server_build


@pytest.fixture
def no_gpu_env(monkeypatch):
    monkeypatch.delenv("ENGINE_CUDA", raising=False)
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    monkeypatch.setattr(server_build.shutil, "which", lambda name: None)  # no nvcc/nvidia-smi


def test_cmake_args_from_the_environment(no_gpu_env, monkeypatch):
    monkeypatch.setenv("CMAKE_ARGS", "-D GGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_AVX512=OFF")
    assert server_build.cmake_args() == ["-DCMAKE_CUDA_ARCHITECTURES=90", "-DGGML_AVX512=OFF"]
    assert server_build.cuda_wanted()  # the guide's CMAKE_ARGS=-DGGML_CUDA=on asks for CUDA


@pytest.mark.parametrize("value, wanted", [("on", True), ("ON", True), ("1", True),
                                           ("off", False), ("0", False)])
def test_ggml_cuda_in_cmake_args_picks_the_flavour(no_gpu_env, monkeypatch, value, wanted):
    monkeypatch.setenv("CMAKE_ARGS", f"-DGGML_CUDA:BOOL={value}")
    assert server_build.cuda_wanted() is wanted
    assert server_build.cmake_args() == []  # the build sets GGML_CUDA itself, from cuda_wanted


def test_engine_cuda_decides_before_cmake_args(no_gpu_env, monkeypatch):
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA=on")
    monkeypatch.setenv("ENGINE_CUDA", "0")
    assert not server_build.cuda_wanted()
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA=off")
    monkeypatch.setenv("ENGINE_CUDA", "1")
    assert server_build.cuda_wanted()


def test_no_gpu_and_no_flags_is_the_cpu_build(no_gpu_env):
    assert not server_build.cuda_wanted()
    assert server_build.binary_dir().parent.name.endswith("-cpu")


def test_other_flags_get_their_own_binary(no_gpu_env, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    plain = server_build.binary_dir(cuda=True)
    monkeypatch.setenv("CMAKE_ARGS", "-DCMAKE_CUDA_ARCHITECTURES=90")
    sm90 = server_build.binary_dir(cuda=True)
    monkeypatch.setenv("CMAKE_ARGS", "-DCMAKE_CUDA_ARCHITECTURES=89")
    sm89 = server_build.binary_dir(cuda=True)
    assert len({plain, sm90, sm89}) == 3
    assert sm90.parent.name.startswith(plain.parent.name + "-")
    monkeypatch.setenv("CMAKE_ARGS", "-DCMAKE_CUDA_ARCHITECTURES=90")
    assert server_build.binary_dir(cuda=True) == sm90  # stable: the cache is found again


def test_a_failed_build_names_its_first_error(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("-- Found CUDAToolkit\n-- Configuring done\n"
                   "CMake Error at ggml/src/ggml-cuda/CMakeLists.txt:178 (target_link_libraries):\n"
                   "  Target \"ggml-cuda\" links to:\n\n    CUDA::cublas\n\n"
                   "  but the target was not found.\n" + "-- filler\n" * 20 +
                   "-- Generating done\nCMake Generate step failed.\n")
    said = server_build.first_error(log)
    assert said.startswith("CMake Error at ggml/src/ggml-cuda/CMakeLists.txt:178")
    assert "CUDA::cublas" in said and "Generate step failed" not in said
    log.write_text("[ 10%] Building CXX object x.o\nfoo.cu(12): error: identifier \"bar\" is "
                   "undefined\n1 error detected\n")
    assert "identifier \"bar\" is undefined" in server_build.first_error(log)
    log.write_text("line 1\nline 2\n")
    assert server_build.first_error(log) == "line 1 | line 2"


@pytest.mark.slow
def test_a_failed_cuda_build_falls_back_to_the_cpu_build(server_binary, monkeypatch):
    """Real cmake on the real llama.cpp source: a CUDA configuration that cannot work (no such
    compiler) fails in seconds, says why, and the run goes on with the CPU llama-server."""
    monkeypatch.setenv("ENGINE_CUDA", "1")
    monkeypatch.setenv("CMAKE_ARGS", "-DCMAKE_CUDA_COMPILER=/nonexistent/nvcc")
    said: list[str] = []
    with pytest.raises(server_build.ServerBuildError, match="CMake Error"):
        server_build.ensure_binary("llama-server", None, said.append)
    assert server_build.find_binary("llama-server", cuda=True) is None  # nothing half-built

    said.clear()
    assert factory.server_binary(said.append) == server_binary
    assert any("CUDA build of llama-server failed" in m and "CMake Error" in m for m in said)
    assert (server_build.cache_root() / "build.log").is_file()
