"""Benchmarks: runnable modules, not tests. Each figure is printed beside a same-run baseline."""
