"""The reliability suite (issue 10): checks that prove nothing is lost and no one gets in.

Each check is a pytest test under tests/reliability/ that records one row — check, what was
tried, result — with `reliability.report.record`. `make test` runs the fast ones;
`make reliability` (reliability/run.py) runs all of them, long ones included, and prints the
table. A check that is not built yet still gets a row, and that row fails.
"""
