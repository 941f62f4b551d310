"""Load documents, chunk them, embed them locally and search them (library + HTTP API).

Importing this package does not import torch: sentence_transformers is loaded when the first
Embedder is created.
"""

from retrieval.chunking import Chunk, chunk_document
from retrieval.documents import Document, SkippedFile, load_documents
from retrieval.embedder import Embedder, default_embedder_path
from retrieval.index import CorpusIndex, Hit

__all__ = [
    "Chunk",
    "CorpusIndex",
    "Document",
    "Embedder",
    "Hit",
    "SkippedFile",
    "chunk_document",
    "default_embedder_path",
    "load_documents",
]
