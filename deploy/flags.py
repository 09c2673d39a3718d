"""Kinds of task flags, kept free of AWS libraries: tasks.py imports this when invoke lists the tasks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from invoke.exceptions import ParseError

N = TypeVar("N", int, float)


def _parse(value: object, convert: Callable[[str], N], not_a_number: str) -> N:
    """VALUE as a number, or the flag's one-line parse error (NOT_A_NUMBER, with the value quoted)."""
    try:
        return convert(str(value).strip())
    except ValueError:
        raise ParseError(f"{not_a_number}, not {value!r}.") from None


class Seconds(int):
    """The kind of --timeout flags (invoke casts a flag's value with its default's type).

    A value that is not a whole number is a one-line parse error before any task runs, instead of
    the traceback invoke shows when int() fails.
    """

    def __new__(cls, value: object = 0) -> Seconds:
        number = _parse(value, int, "error: --timeout takes a whole number of seconds")
        if number < 0:
            raise ParseError(f"error: --timeout takes a whole number of seconds (0: the default), not {number}.")
        return super().__new__(cls, number)


class Count(int):
    """The kind of --seconds (traffic) and --limit flags: a whole number of at least 1, or a one-line parse error."""

    def __new__(cls, value: object = 1) -> Count:
        number = _parse(value, int, "error: that flag takes a whole number of at least 1")
        if number < 1:
            raise ParseError(f"error: that flag takes a whole number of at least 1, not {number}.")
        return super().__new__(cls, number)


# The most requests a second `inv traffic` sends (its pool of senders keeps up with this many): --rate accepts
# exactly what it sends, never more.
MAX_RATE = 200.0


class Rate(float):
    """The kind of --rate: requests a second, more than 0 and at most MAX_RATE, or a one-line parse error."""

    def __new__(cls, value: object = 10.0) -> Rate:
        number = _parse(value, float, "error: --rate takes a number of requests a second")
        if not 0 < number <= MAX_RATE:
            raise ParseError(
                f"error: --rate takes more than 0 and at most {MAX_RATE:g} requests a second (the most `inv traffic`"
                f" sends), not {number:g}."
            )
        return super().__new__(cls, number)
