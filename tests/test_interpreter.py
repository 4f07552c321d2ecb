"""Interpreter-wide settings held by queuekit components (queuekit.interpreter)."""

from __future__ import annotations

from queuekit.interpreter import HeldSetting


class Knob:
    """A stand-in for a process-wide setting, so these tests change nothing global."""

    def __init__(self, value: int) -> None:
        self.value = value

    def read(self) -> int:
        return self.value

    def write(self, value: int) -> None:
        self.value = value


def test_the_preferred_value_held_applies_and_the_last_to_let_go_restores_the_original() -> None:
    # Given a setting at 700, raised by its holders
    knob = Knob(700)
    setting = HeldSetting(knob.read, knob.write, max)

    # When two holders overlap
    setting.hold(5_000)
    first = knob.value
    setting.hold(10_000)
    both = knob.value
    setting.let_go(10_000)
    after_one = knob.value
    setting.let_go(5_000)

    # Then the highest held applies while any holds, and the original comes back at the end
    assert (first, both, after_one, knob.value) == (5_000, 10_000, 5_000, 700)


def test_a_hold_that_is_not_preferred_changes_nothing() -> None:
    knob = Knob(20_000)
    setting = HeldSetting(knob.read, knob.write, max)
    setting.hold(10_000)
    assert knob.value == 20_000
    setting.let_go(10_000)
    assert knob.value == 20_000


def test_a_value_someone_else_set_meanwhile_is_left_alone() -> None:
    # Given a held setting that the application changes while it is held
    knob = Knob(700)
    setting = HeldSetting(knob.read, knob.write, max)
    setting.hold(10_000)
    knob.write(3_000)

    # When the holder lets go, Then the application's value stays
    setting.let_go(10_000)
    assert knob.value == 3_000
