"""Corpora, tokenized data and batching."""
