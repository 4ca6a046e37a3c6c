"""What `automl space` prints: a search-space file (or a TAO schema) as the parameters it offers, or the
space one study would search once resolved against a spec, without starting anything."""

from __future__ import annotations

from automl.space.sampling import SearchSpace
from automl.space.schema import SearchSpaceFile, param_line


def file_lines(sf: SearchSpaceFile) -> list[str]:
    """The file's offer: searched by default, searched when named in automl.hyperparameters, never, left out."""
    defaults = [sf.parameters[n] for n in sf.default_parameters]
    named = [p for n, p in sf.parameters.items() if n not in sf.default_parameters and not sf.is_disabled(n)]
    lines = [f"model: {sf.model}", f"searched by default ({len(defaults)}):"]
    lines += [f"  {param_line(p)}" for p in defaults]
    lines += [f"searched when named in automl.hyperparameters ({len(named)}):"]
    lines += [f"  {param_line(p)}" for p in named]
    if sf.disabled_parameters:
        lines.append(f"never searched: {', '.join(sf.disabled_parameters)}")
    if sf.notes:
        lines += [f"left out ({len(sf.notes)}):", *(f"  {note}" for note in sf.notes)]
    return lines


def space_lines(space: SearchSpace, sf: SearchSpaceFile, warm_start: bool = True) -> list[str]:
    """The resolved space of one study: what is searched, over which ranges, under which conditions."""
    lines = [f"model: {space.model}", f"searched ({len(space.params)}):", *(f"  {line}" for line in space.describe())]
    first = space.first_points() if warm_start else {}
    if first:
        lines.append("first trials (automl.warm_start), before anything is drawn:")
        lines += [f"  {label}: {', '.join(f'{k}={v!r}' for k, v in point.items())}" for label, point in first.items()]
    if sf.notes:
        lines += [f"left out of the file ({len(sf.notes)}):", *(f"  {note}" for note in sf.notes)]
    return lines
