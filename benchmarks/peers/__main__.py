"""``python -m benchmarks.peers <framework> <broker> --count N``: one round of one peer."""

from __future__ import annotations

import argparse
import importlib

FRAMEWORKS = ("faststream", "dramatiq", "celery", "taskiq")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("broker", choices=("rabbitmq", "redis", "kafka"))
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    runner = importlib.import_module(f"benchmarks.peers.{args.framework}_side")
    runner.run(args.broker, args.count)


if __name__ == "__main__":
    main()
