"""How the command line fails: one line naming the problem and the fix, a non-zero exit.

Every subcommand runs through :func:`run_command`. Expected failures (``AutobinError`` and the
built-in types autobin's errors also subclass, file-system errors) print as
``autobin <command>: error: <message>`` with multi-line messages joined into one line; anything
else is reported as an internal error in one line too. ``AUTOBIN_DEBUG=1`` shows tracebacks.
Argument checks (:func:`positive_int`, :func:`output_file`, :func:`output_dir`) make argparse
refuse bad values before any work starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import AutobinError

EXIT_ERROR = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

_EXPECTED = (AutobinError, ValueError, TypeError, LookupError, RuntimeError, OSError)
_OS_FIXES = {
    FileNotFoundError: "check the path",
    IsADirectoryError: "give a file name, not a directory",
    NotADirectoryError: "a part of the path is a file, not a directory: choose another path",
    PermissionError: "choose a location you may write to, or fix its permissions",
    FileExistsError: "remove it or choose another name",
}


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a file-system error names its file and a fix)."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, AutobinError):
        where = f"{exc.filename}: " if exc.filename else ""
        fix = next((f for t, f in _OS_FIXES.items() if isinstance(exc, t)), None)
        text = f"{where}{exc.strerror}" + (f" ({fix})" if fix else "")
    else:
        text = str(exc).strip() or type(exc).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(command: str, func: Callable[[argparse.Namespace], int], args) -> int:
    """Run a subcommand; turn every failure into one line on stderr and an exit status."""
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"autobin {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _EXPECTED as exc:
        if os.environ.get("AUTOBIN_DEBUG"):
            raise
        print(f"autobin {command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line, with how to get the details
        if os.environ.get("AUTOBIN_DEBUG"):
            raise
        print(
            f"autobin {command}: internal error: {type(exc).__name__}: {one_line(exc)} (run "
            "again with AUTOBIN_DEBUG=1 for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (e.g. 3)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer (e.g. 3)")
    return value


_SUFFIXES = {"K": 1e3, "M": 1e6, "G": 1e9}


def budget_number(text: str) -> float:
    """argparse type: a number >= 0, optionally with a K/M/G suffix (``5e6``, ``5M``)."""
    raw = text.strip()
    scale = _SUFFIXES.get(raw[-1:].upper(), 1.0) if raw else 1.0
    try:
        value = float(raw[:-1] if scale != 1.0 else raw) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; write e.g. 5000000, 5e6 or 5M"
        ) from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def share(text: str) -> float:
    """argparse type: a share between 0 and 1 (``0.95``) or a percentage (``95%``)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a share; write e.g. 0.95 or 95%"
        ) from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (or 0% and 100%)")
    return value


def _refuse_under_file(text: str, path: Path, verb: str) -> None:
    """Refuse ``path`` when its first existing parent is a file (nothing can be made below it)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(
                    f"cannot {verb} {text}: {parent} is a file, not a directory; choose another "
                    "path"
                )
            return


def output_file(text: str) -> Path:
    """argparse type: a file to write (not a directory, not under a file)."""
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"{text} is a directory; give a file name, e.g. {path / 'bnn.safetensors'}"
        )
    _refuse_under_file(text, path, "write")
    return path


def output_dir(text: str) -> Path:
    """argparse type: a directory to write into (not a file, not under a file)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a directory path")
    _refuse_under_file(text, path, "create")
    return path


def existing_dir(text: str) -> Path:
    """argparse type: a directory that may not exist yet but is not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a directory")
    return path


__all__ = [
    "budget_number",
    "existing_dir",
    "one_line",
    "output_dir",
    "output_file",
    "positive_int",
    "run_command",
    "share",
]
