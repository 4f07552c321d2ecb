"""Side-by-side benchmarks: raw clients vs queuekit vs peer frameworks (``make bench``).

Run ``python -m benchmarks --help``. Nothing here is imported by queuekit or by its tests,
except the one smoke test that runs the harness on SQLite with a tiny count.
"""
