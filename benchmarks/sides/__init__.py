"""What runs in one benchmark subprocess: the raw clients by hand, and queuekit.

``python -m benchmarks.sides <side> --count N`` runs one round and prints its result line
(see :func:`benchmarks.workload.report`); the harness reads the process's peak RSS.
"""
