"""Parsing JSON a user (or a hand edit) wrote: nesting too deep or a number too long to read ends in one
UserError line instead of an interpreter error."""

from __future__ import annotations

import json
from typing import Any

from plumbing.errors import UserError


def parse_json(text: str, what: str) -> Any:
    """`text` as JSON; `what` names the file in the one-line error. NaN and Infinity are read (Python writes
    them); the fields that must be finite say so where they are checked."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # the C parser recurses once per bracket
        raise UserError(f"{what}: not valid JSON (brackets nested too deeply)") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise UserError(f"{what}: not valid JSON ({' '.join(str(exc).split()).partition(';')[0]})") from None
