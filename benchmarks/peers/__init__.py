"""Peer frameworks doing the same workload, run in their own virtualenv (``.peers-venv``).

``benchmarks/.peers-venv/bin/python -m benchmarks.peers <framework> <broker> --count N``.
Each runner uses the framework's recommended production setup with the same durability as
queuekit (publisher confirms / acks=all / XADD), acks after the handler, prefetch PREFETCH,
and runs its consumer in the same process as its producer, like the other sides. These
modules import only the standard library, :mod:`benchmarks.workload` and the framework.
"""
