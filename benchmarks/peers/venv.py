"""The peers' separate virtualenv, ``benchmarks/.peers-venv`` (git-ignored).

Created on first use with the frameworks' own extras, so they never become queuekit
dependencies. Runs in the main virtualenv (it only creates and inspects the other one).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parents[1] / ".peers-venv"
REQUIREMENTS = (
    "faststream[rabbit,kafka,redis]",
    "dramatiq[rabbitmq,redis]",
    "celery[redis]",
    "taskiq",
    "taskiq-aio-pika",
    "taskiq-redis",
    "orjson",
)
DISTRIBUTIONS = (
    "faststream",
    "dramatiq",
    "celery",
    "kombu",
    "taskiq",
    "taskiq-aio-pika",
    "taskiq-redis",
    "aio-pika",
    "aiokafka",
    "redis",
    "pika",
    "amqp",
)


def python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> Path:
    """Create and fill the virtualenv if it is missing; return its interpreter.

    Raises:
        subprocess.CalledProcessError: venv or pip failed (the output says why).
    """
    stamp = VENV / ".installed"
    if not stamp.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run(
            [str(python()), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True
        )
        subprocess.run(
            [str(python()), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True
        )
        stamp.write_text("\n".join(REQUIREMENTS) + "\n")
    return python()


def versions() -> dict[str, str]:
    """Installed versions of the peers and their clients, read in the peers' virtualenv."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(python()), "-c", code, *DISTRIBUTIONS], capture_output=True, text=True, check=True
    )
    import json

    found: dict[str, str] = json.loads(done.stdout)
    return found
