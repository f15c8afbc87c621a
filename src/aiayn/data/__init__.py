"""Corpora (readers, fixed and seeded splits) and length-bucketed token-budget batching."""

from .batching import Batch, TokenBatcher, collate
from .corpus import BUNDLED, Corpus, CorpusError, load_corpus, read_parallel, read_tsv, split_by_book

__all__ = ["BUNDLED", "Batch", "Corpus", "CorpusError", "TokenBatcher", "collate", "load_corpus", "read_parallel",
           "read_tsv", "split_by_book"]
