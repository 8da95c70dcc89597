"""Scaffolding for tests and benchmarks: toy corpora and untrained toy models (not product code)."""
