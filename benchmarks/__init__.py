"""Benchmarks (not tests): latency figures for the closing notes, measured against a baseline in the same run."""
