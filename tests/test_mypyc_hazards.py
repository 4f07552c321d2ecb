"""The modules compiled with mypyc avoid the constructs that mypyc (2.4) compiles wrongly.

In a compiled coroutine, an ``await`` inside ``finally`` and a bare ``raise`` after an
``await`` inside ``except`` re-raise the thread's ``sys.exc_info()`` instead of the
coroutine's own exception: a cancelled task's stale ``CancelledError`` escaped
``Worker.run`` that way. Such code must catch the exception into a name, await, and
``raise`` that name. And ``isinstance(x, Admin)`` compiles to False: ``Admin`` is not a
native class, and no compiled class implements it. This test reads the compiled modules
from pyproject.toml.

mypyc also checks each argument against its annotation before the function body runs, so a
run-time type check of an annotated parameter never runs compiled: mypy's
``warn_unreachable`` and ``redundant-expr`` flag those checks, and must cover every compiled
module.
"""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

import pytest

from queuekit.broker import Broker, Delivery, Subscription
from queuekit.worker import Worker
from queuekit.worker.middleware import (
    AttemptLimitMiddleware,
    IdempotencyMiddleware,
    LoggingMiddleware,
    MetricsMiddleware,
    Observing,
    SettlementMiddleware,
    TimeoutMiddleware,
    ValidationMiddleware,
)

ROOT = Path(__file__).resolve().parents[1]
_AWAITING = (ast.Await, ast.AsyncWith, ast.AsyncFor)


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def compiled_modules() -> list[Path]:
    """The source files the mypyc build hook compiles."""
    hook = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["mypyc"]
    excluded = {ROOT / pattern.lstrip("/") for pattern in hook.get("exclude", [])}
    found: list[Path] = []
    for pattern in hook["include"]:
        path = ROOT / pattern.lstrip("/")
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [path for path in found if path not in excluded]


def _awaits(nodes: list[ast.stmt]) -> bool:
    return any(isinstance(node, _AWAITING) for statement in nodes for node in ast.walk(statement))


def hazards(source: str) -> list[str]:
    """``line: what`` for each construct mypyc mis-compiles in ``source``."""
    tree = ast.parse(source)
    found = [
        f"{node.lineno}: isinstance against the non-native Admin"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "isinstance"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Name)
        and node.args[1].id == "Admin"
    ]
    for function in ast.walk(tree):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Try):
                continue
            if node.finalbody and _awaits(node.finalbody):
                found.append(f"{node.lineno}: {function.name}: await inside finally")
            for handler in node.handlers:
                awaited = False
                for statement in handler.body:
                    for inner in ast.walk(statement):
                        awaited = awaited or isinstance(inner, _AWAITING)
                        if awaited and isinstance(inner, ast.Raise) and inner.exc is None:
                            found.append(
                                f"{inner.lineno}: {function.name}: bare raise after an await"
                            )
    return found


def test_the_scan_finds_each_construct() -> None:
    # Given a module with each construct
    source = (
        "async def f():\n"
        "    try:\n"
        "        await g()\n"
        "    except Exception:\n"
        "        await h()\n"
        "        raise\n"
        "    finally:\n"
        "        await h()\n"
        "admin = isinstance(broker, Admin)\n"
    )
    # When it is scanned, Then each is reported
    assert hazards(source) == [
        "9: isinstance against the non-native Admin",
        "2: f: await inside finally",
        "6: f: bare raise after an await",
    ]


def test_no_compiled_module_has_them() -> None:
    # Given the modules the build compiles
    modules = compiled_modules()
    assert modules

    # When each is scanned
    found = [
        f"{path.relative_to(ROOT)}:{hazard}"
        for path in modules
        for hazard in hazards(path.read_text())
    ]

    # Then none has a construct mypyc compiles wrongly
    assert found == []


def test_mypy_flags_dead_type_checks_in_every_compiled_module() -> None:
    # Given the mypy overrides that flag run-time checks of annotated types
    patterns = [
        pattern
        for override in PYPROJECT["tool"]["mypy"]["overrides"]
        if override.get("warn_unreachable")
        and "redundant-expr" in override.get("enable_error_code", [])
        for pattern in override["module"]
    ]

    # When each compiled module's name is matched against them
    names = [
        ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)
        for path in compiled_modules()
    ]
    uncovered = [
        name
        for name in names
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    ]

    # Then every compiled module is covered
    assert uncovered == []


@pytest.mark.parametrize(
    "base",
    [
        Broker,
        Delivery,
        Subscription,
        Worker,
        Observing,
        AttemptLimitMiddleware,
        IdempotencyMiddleware,
        LoggingMiddleware,
        MetricsMiddleware,
        SettlementMiddleware,
        TimeoutMiddleware,
        ValidationMiddleware,
    ],
    ids=lambda base: base.__name__,
)
def test_user_code_can_subclass_the_public_bases(base: type) -> None:
    # Given a class users build on (compiled classes refuse interpreted subclasses unless
    # marked with mypyc_attr(allow_interpreted_subclasses=True))
    # When interpreted code subclasses it
    subclass = type(f"User{base.__name__}", (base,), {})

    # Then the subclass exists
    assert issubclass(subclass, base)
