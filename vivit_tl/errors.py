"""User-facing errors and the command-line wrapper that prints them as one line."""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from typing import Any, Callable, Sequence


class UserError(ValueError):
    """A problem with the user's input (config, paths, files): shown as one line, no traceback."""


def did_you_mean(key: str, valid: Sequence[str], prefix: str = "") -> str:
    """`` (did you mean 'optim.lr'?)`` for the valid key closest to a misspelt one, else ``""``."""
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def reject_unknown_keys(cls: type, d: dict[str, Any], what: str) -> None:
    """ValueError naming the keys of ``d`` that are not fields of dataclass ``cls``, listing the valid ones."""
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}{did_you_mean(unknown[0], valid)}; valid keys: {valid}")


def run_cli(main: Callable[[], object]) -> None:
    """Run a tool's ``main``; print user errors as ``error: <message>`` and exit with status 2, and Ctrl-C
    as ``interrupted`` with status 130.

    Set ``VIVIT_TL_DEBUG=1`` to see the full traceback instead.
    """
    try:
        result = main()
    except (ValueError, FileNotFoundError, NotADirectoryError, KeyError) as exc:
        if os.environ.get("VIVIT_TL_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C: training resumes from its latest checkpoint (vivit-tl train --resume)
        if os.environ.get("VIVIT_TL_DEBUG"):
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
