"""Kinds of task flags, kept free of AWS libraries: tasks.py imports this when invoke lists the tasks."""

from __future__ import annotations

from invoke.exceptions import ParseError


class Seconds(int):
    """The kind of --timeout flags (invoke casts a flag's value with its default's type).

    A value that is not a whole number is a one-line parse error before any task runs, instead of
    the traceback invoke shows when int() fails.
    """

    def __new__(cls, value: object = 0) -> Seconds:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ParseError(f"error: --timeout takes a whole number of seconds, not {value!r}.") from None
        if number < 0:
            raise ParseError(f"error: --timeout takes a whole number of seconds (0: the default), not {number}.")
        return super().__new__(cls, number)


class Count(int):
    """The kind of --seconds (traffic) and --limit flags: a whole number of at least 1, or a one-line parse error."""

    def __new__(cls, value: object = 1) -> Count:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ParseError(f"error: that flag takes a whole number of at least 1, not {value!r}.") from None
        if number < 1:
            raise ParseError(f"error: that flag takes a whole number of at least 1, not {number}.")
        return super().__new__(cls, number)


class Rate(float):
    """The kind of --rate: requests a second, more than 0 and at most 1000, or a one-line parse error."""

    def __new__(cls, value: object = 10.0) -> Rate:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ParseError(f"error: --rate takes a number of requests a second, not {value!r}.") from None
        if not 0 < number <= 1000:
            raise ParseError(f"error: --rate takes more than 0 and at most 1000 requests a second, not {number}.")
        return super().__new__(cls, number)
