"""Conformance runs, one small class per backend."""

import sys

import pytest

# Plain asserts in the shipped suite get pytest's detailed failure messages. Registering a
# module that is already imported would only warn (an error under -W error), hence the check.
if "queuekit.testing.conformance" not in sys.modules:
    pytest.register_assert_rewrite("queuekit.testing.conformance")
