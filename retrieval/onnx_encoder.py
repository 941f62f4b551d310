"""The embedding model's forward pass in ONNX Runtime, exported once from the same weights.

Why: the engine embeds in a worker thread while its event loop runs Python. A PyTorch eager
forward takes the GIL back after each of its hundreds of small ops, so a busy loop stalls it
(measured: one batch of 12 questions, 37 ms alone, 982 ms beside a spinning Python thread).
ONNX Runtime runs the whole forward in one call without the GIL (33 ms alone, 66-94 ms beside
it) and is ~2.8x faster for a single text (3.9 vs 10.8 ms).

Only for the shape the default model has (a transformer with mean pooling, vectors normalized);
anything else, or a missing onnxruntime, or an export that fails or disagrees with PyTorch,
leaves the embedder on sentence-transformers. The export is cached per model files and library
versions under the user cache directory; it is checked against PyTorch every time it is loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROBES = ["dimension probe", "How many slots does the managed llama-server start with by "
          "default, and which flag changes that?", "ok"]  # different lengths: padding matters
AGREE = 1e-4  # largest difference allowed from the PyTorch vectors (seen: 1.2e-7)


def cache_dir() -> Path:
    from models.server_build import cache_root  # the project's one cache folder

    return cache_root() / "onnx"


def onnx_encoder(model, model_dir: Path) -> Callable[[list[str], int], np.ndarray] | None:
    """`encode(texts, batch_size)` -> normalized float32 rows through ONNX Runtime, or None
    (and why, in the log) when the model stays on PyTorch."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    names = [type(module).__name__ for module in model]
    shape_fits = names[:2] == ["Transformer", "Pooling"] and all(
        n == "Normalize" for n in names[2:])
    if not shape_fits or model[1].get_config_dict().get("pooling_mode") != "mean":
        log.info("embedder stays on PyTorch: ONNX export covers mean-pooled models only (%s)",
                 "+".join(names))
        return None
    tokenizer, max_length = model.tokenizer, model.max_seq_length
    inputs = list(tokenizer(["probe"], return_tensors="np").keys())
    try:
        path = _exported(model[0].auto_model, inputs, model_dir)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers are not ours
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # any failure: the PyTorch path works, say why and use it
        log.warning("embedder stays on PyTorch: ONNX export or load failed (%s)", exc)
        return None

    def forward(texts: list[str]) -> np.ndarray:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                          return_tensors="np")
        return session.run(None, {k: batch[k].astype(np.int64) for k in inputs})[0]

    dim = session.get_outputs()[0].shape[1]  # the graph's own width: ("batch", dim)

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        out = np.empty((len(texts), dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # less padding per batch
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = forward([texts[i] for i in rows])
        return out

    expected = model.encode(PROBES, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)
    if not np.allclose(encode(PROBES, 2), expected, atol=AGREE):
        log.warning("embedder stays on PyTorch: the ONNX export disagrees with it")
        return None
    return encode


def _exported(transformer, inputs: list[str], model_dir: Path) -> Path:
    """The model exported with mean pooling and normalization inside the graph, once per model
    files and library versions (written to a temporary name, then moved into place)."""
    import torch
    import transformers

    key = hashlib.sha256(str(model_dir.resolve()).encode())
    for f in sorted(model_dir.rglob("*")):
        if f.is_file():
            stat = f.stat()
            key.update(f"{f.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key.update(f"{torch.__version__}:{transformers.__version__}".encode())
    path = cache_dir() / f"{key.hexdigest()[:20]}.onnx"
    if path.exists():
        return path

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            named = dict(zip(inputs, args))
            tokens = self.transformer(**named).last_hidden_state
            mask = named["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=1)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    dummy = {k: torch.ones((2, 8), dtype=torch.long) for k in inputs}
    dummy["input_ids"] = torch.randint(0, min(1000, transformer.config.vocab_size), (2, 8))
    dynamic = {k: {0: "batch", 1: "tokens"} for k in inputs} | {"embedding": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes about the model's Python branches
            torch.onnx.export(Pooled().eval(), tuple(dummy[k] for k in inputs), str(tmp),
                              input_names=inputs, output_names=["embedding"],
                              dynamic_axes=dynamic, opset_version=17, dynamo=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
