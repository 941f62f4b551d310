"""Dedup gates: exact (normalized-text hash) and near (embedding cosine)."""

from dedup.exact import ExactDedup, normalize, text_key
from dedup.near import CorruptIndexError, NearDupIndex

__all__ = ["CorruptIndexError", "ExactDedup", "NearDupIndex", "normalize", "text_key"]
