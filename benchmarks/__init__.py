"""Benchmarks of nde-lab (`tox -e bench`); results go to docs/benchmarks.md."""
