"""Benchmarks: Ferry beside a raw baseline measured in the same run (see README)."""
