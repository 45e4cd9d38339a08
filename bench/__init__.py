"""Benchmarks: scripts run by path (python bench/<name>.py) that print their figures."""
