"""The error base class every autobin error derives from, and the one closed-choice check.

``AutobinError`` lets callers (and the CLI) catch "autobin said no" in one ``except``; each
layer's own errors subclass it together with the built-in type callers already catch
(``ValueError``, ``LookupError``, ...). :func:`check_choice` is the single validator of a value
from a closed vocabulary (methods, estimators, activation forms): its message names the bad
value, every valid choice with what it means, and the closest match.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


class AutobinError(Exception):
    """Base class of every error autobin raises on purpose (bad input, damaged files, ...)."""


class AutobinWarning(UserWarning):
    """Base class of every warning autobin issues (filter them all with this one class)."""


class BinarizeError(AutobinError, ValueError):
    """The model cannot be binarized as asked (already binarized, example input fails, ...)."""


class ModelTypeError(AutobinError, TypeError):
    """An argument that must be a module is of another type."""


class ChoiceError(AutobinError, ValueError):
    """A value is not one of a closed set of choices.

    Attributes:
        value: The rejected value.
        choices: The valid choices, in their declared order.
        what: What the value names, e.g. ``"binarization method"``.
    """

    def __init__(self, message: str, value: Any, choices: tuple[str, ...], what: str) -> None:
        super().__init__(message)
        self.value, self.choices, self.what = value, choices, what

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.value, self.choices, self.what))


def did_you_mean(value: Any, options: Iterable[str]) -> str | None:
    """Suggest the closest valid choice to a misspelt one, or None."""
    if not isinstance(value, str):
        return None
    options = list(options)
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    if not close and value.lower() in {o.lower() for o in options}:
        close = [o for o in options if o.lower() == value.lower()]
    return f"did you mean {close[0]!r}?" if close else None


def check_choice(value: Any, choices: Mapping[str, str] | Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ChoiceError`.

    Args:
        value: The value to check.
        choices: The valid values, or a mapping from each valid value to a short description
            that the error message shows.
        what: What the value names, for the message (``"weight estimator"``).
    """
    names = tuple(choices)
    if isinstance(value, str) and value in names:
        return value
    if isinstance(choices, Mapping):
        listed = ", ".join(f"{k!r} ({choices[k]})" for k in names)
    else:
        listed = ", ".join(repr(k) for k in names)
    hint = did_you_mean(value, names)
    raise ChoiceError(
        f"unknown {what} {value!r}; valid choices are {listed}" + (f"; {hint}" if hint else ""),
        value,
        names,
        what,
    )


__all__ = [
    "AutobinError",
    "AutobinWarning",
    "BinarizeError",
    "ChoiceError",
    "ModelTypeError",
    "check_choice",
    "did_you_mean",
]
