"""User-facing wording: pydantic's first error as one line that names the key, the bad value and what is
allowed, with a close-match suggestion for typos."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from plumbing.fields import leaf_fields

# pydantic names the member of a union a value failed against (`low.float`); the user wrote `low`
_UNION_MEMBERS = ("bool", "int", "float", "str", "none")


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxlong = 3, 8, 8, 100, 60


class Shown:
    """A bad value as an error message shows it: its repr, cut short when long (a pasted list, an alias bomb)."""

    LIMIT = 120

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        # reprlib stops early: the full repr of an alias bomb or a huge pasted list would never finish
        text = _SHORT.repr(self.value)
        return text if len(text) <= self.LIMIT else f"{text[: self.LIMIT - 5]} ...{text[-1]}"


def printable(text: str) -> str:
    """Control characters (a newline in a YAML key) escaped, so a message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def close_match(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or nothing when none is close."""
    match = close_match(name, candidates, cutoff)
    return f" (did you mean '{match}'?)" if match else ""


def suggest_field(
    dotted: str, root: type[BaseModel], prefix: str = "", aliases: Mapping[str, str] | None = None
) -> str:
    """A suggestion for an unknown spec key: another framework's name for a field (`aliases`: learning_rate ->
    lr), the same name in another section (the right name in the wrong place), a close match among the
    section's own fields, then any field with a similar name."""
    *parents, leaf = dotted.split(".")
    section: Any = root
    for part in parents:
        fields = getattr(section, "model_fields", None)
        section = fields[part].annotation if isinstance(fields, dict) and part in fields else None
    if not (isinstance(section, type) and issubclass(section, BaseModel)):
        return ""
    everywhere = list(leaf_fields(root))
    here = "".join(f"{p}." for p in parents)
    alias = (aliases or {}).get(leaf.lower())
    if alias:
        target = here + alias if alias in section.model_fields else next(
            (path for path in everywhere if path.rsplit(".", 1)[-1] == alias), None
        )
        if target:
            return f" (did you mean '{prefix}{target}'?)"
    moved = [path for path in everywhere if path.rsplit(".", 1)[-1] == leaf and path != dotted]
    if moved:
        return f" (did you mean '{prefix}{moved[0]}'?)"
    near = close_match(leaf, section.model_fields)
    if near:
        return f" (did you mean '{prefix}{here}{near}'?)"
    by_leaf = close_match(leaf, [path.rsplit(".", 1)[-1] for path in everywhere], cutoff=0.8)
    if by_leaf:
        return f" (did you mean '{prefix}{next(p for p in everywhere if p.rsplit('.', 1)[-1] == by_leaf)}'?)"
    return ""


def describe(error: Mapping[str, Any], suggest: Callable[[str], str] = lambda where: "") -> str:
    """One line from one of pydantic's errors: `where: what`. `suggest(where)` adds a hint for an unknown key."""
    where = ".".join(str(p) for p in error["loc"] if not isinstance(p, int) and p not in _UNION_MEMBERS)
    kind, msg, value = error["type"], error["msg"], Shown(error.get("input"))
    if kind == "extra_forbidden":
        return printable(f"{where}: unknown key{suggest(where)}")
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        head, sep, _ = msg.partition(": ")
        if sep and head.replace(".", "_").isidentifier():  # a model validator naming its own field
            return printable(f"{where + '.' if where else ''}{msg}")
        return printable(f"{where}: {msg}" if where else msg)
    if kind == "literal_error":
        return printable(f"{where}: {value!r} is not allowed; expected {msg.removeprefix('Input should be ')}")
    return printable(f"{where}: {value!r} is not allowed ({msg[0].lower() + msg[1:]})")
