"""Benchmarks, run as scripts (`python bench/bus.py`).

A package so that type checkers name `bench/bus.py` `bench.bus`, not a second top-level `bus`.
"""
