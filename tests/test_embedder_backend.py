"""The embedder's ONNX Runtime forward (retrieval/onnx_encoder.py): the same vectors as
sentence-transformers' PyTorch forward, exported once and reused, and PyTorch whenever ONNX
cannot serve (real model, real export, real runtime)."""

import logging

import numpy as np
import pytest

from retrieval import Embedder
from retrieval import onnx_encoder as onnx_module

TEXTS = ["ok", "How tall is Mount Etna in Sicily?",
         "The Stockton and Darlington Railway opened in 1825 and carried coal " * 40,  # truncated
         "Què és l'estació més plujosa? 雨季はいつですか?", ""]


@pytest.fixture(scope="module")
def torch_embedder():
    return Embedder(backend="torch")


def test_the_default_embedder_runs_on_onnx_and_gives_the_pytorch_vectors(embedder,
                                                                        torch_embedder):
    assert embedder.backend == "onnx" and torch_embedder.backend == "torch"
    got, want = embedder.encode(TEXTS, batch_size=2), torch_embedder.encode(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # batched and sorted by length inside, yet each row stays with its text
    one_by_one = np.stack([embedder._encode_unlocked([t], 1)[0] for t in TEXTS])
    assert np.abs(one_by_one - got).max() < 1e-5


def test_the_export_is_made_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = Embedder()
    exported = list((tmp_path / "agentinstruct-engine" / "onnx").glob("*.onnx"))
    assert first.backend == "onnx" and len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    second = Embedder()
    assert second.backend == "onnx"
    assert [p.stat().st_mtime_ns for p in exported] == [stamp]  # not written again
    assert not list(exported[0].parent.glob("*.tmp"))


def test_a_broken_export_leaves_the_embedder_on_pytorch(tmp_path, monkeypatch, caplog,
                                                        torch_embedder):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    Embedder()  # export once, then damage the file
    (exported,) = (tmp_path / "agentinstruct-engine" / "onnx").glob("*.onnx")
    exported.write_bytes(b"not an onnx graph")
    with caplog.at_level(logging.WARNING):
        fallback = Embedder()
    assert fallback.backend == "torch"
    assert "stays on PyTorch" in caplog.text
    assert np.abs(fallback.encode(TEXTS[:2]) - torch_embedder.encode(TEXTS[:2])).max() < 1e-6


def test_an_export_that_disagrees_with_pytorch_is_not_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(onnx_module, "PROBES", ["a", "b"])
    monkeypatch.setattr(onnx_module, "AGREE", -1.0)  # nothing can agree this closely
    with caplog.at_level(logging.WARNING):
        assert Embedder().backend == "torch"
    assert "disagrees" in caplog.text


def test_a_model_that_is_not_mean_pooled_stays_on_pytorch(tmp_path, monkeypatch, caplog):
    """The export reproduces mean pooling only: the same weights pooled on the CLS token keep
    sentence-transformers' own forward (and its vectors)."""
    import json

    from retrieval.embedder import default_embedder_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source, model = default_embedder_path(), tmp_path / "cls-model"
    for f in source.rglob("*"):
        if f.is_file():
            (model / f.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (model / f.relative_to(source)).symlink_to(f)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text()) | {"pooling_mode_cls_token": True,
                                                "pooling_mode_mean_tokens": False}
    pooling.unlink()
    pooling.write_text(json.dumps(config))
    with caplog.at_level(logging.INFO):
        cls = Embedder(model)
    assert cls.backend == "torch" and "mean-pooled models only" in caplog.text
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # nothing exported
    vec = cls.encode(["How tall is Mount Etna in Sicily?"])
    assert vec.shape == (1, 384) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5
