"""`mal schema train --format tao`: the spec as a TAO-format schema, the layout of TAO's `train.schema.json`.

Per leaf: `type`, `default`, `description` and `automl_enabled`; for the parameters of MAL's search space
also `minimum`/`maximum`, `valid_options` (and `enum`) with `option_weights`, and `math_cond` (`/ N` for a
step, `< depends_on` for a constraint, `/ N` with `depends_on` for a derived value). What TAO's layout has
no key for is written under `x_` keys that TAO ignores: `x_log` (log scale), `x_step` (a step off the
multiples of N) and `x_condition`. At the top:
`default`, `popular`, `automl_default_parameters`, `automl_disabled_parameters` and `x_tao_schema`.
`automl space` reads the file back into the same space as the search-space YAML it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mal.spec.schema import ExperimentSpec
from plumbing.fields import leaf_fields, value_at
from plumbing.safe_yaml import read_mapping

SEARCH_SPACE = Path(__file__).resolve().parents[1] / "search_space.yaml"


def _disabled(name: str, disabled: list[str]) -> bool:
    return any(name == d or name.startswith(d + ".") for d in disabled)


def _tao_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    return "string"


def _search_keys(p: dict[str, Any]) -> dict[str, Any]:
    """A search-space parameter as TAO's keys (and ours under x_ where TAO has none)."""
    keys: dict[str, Any] = {}
    if p.get("derive"):  # TAO's own way of saying it: depends_on with `/ N`
        source, n = (part.strip() for part in p["derive"].split("//"))
        return {"type": "int", "depends_on": source, "math_cond": f"/ {n}"}
    if p["type"] == "categorical":
        choices = p["choices"]
        keys["type"] = "ordered_int" if all(isinstance(c, int) and not isinstance(c, bool) for c in choices) else "categorical"
        keys.update(enum=choices, valid_options=choices)
        if p.get("weights"):
            keys["option_weights"] = p["weights"]
    elif p["type"] in ("float", "int"):
        keys.update(type=p["type"], minimum=p["low"], maximum=p["high"])
        step = p.get("step")
        if step is not None:
            whole = float(step).is_integer() and all(float(b) % step == 0 for b in (p["low"], p["high"]))
            keys.update({"math_cond": f"/ {int(step)}"} if whole and p["type"] == "int" else {"x_step": step})
        if p.get("log"):
            keys["x_log"] = True
    else:
        keys["type"] = "bool"
    if p.get("constraint"):
        op, target = p["constraint"].split()
        keys.update(math_cond=f"{op} depends_on", depends_on=target)
    if p.get("condition"):
        keys["x_condition"] = p["condition"]
    return keys


def tao_schema(action: str) -> dict[str, Any]:
    """The spec and MAL's search space in TAO's schema layout."""
    space = read_mapping(SEARCH_SPACE, "search-space file")
    params, defaults = space.get("parameters", {}), list(space.get("default_parameters", []))
    disabled = list(space.get("disabled_parameters", []))
    spec = ExperimentSpec()
    root: dict[str, Any] = {}

    def section(dotted: str) -> dict[str, Any]:
        node = root
        for part in dotted.split(".")[:-1]:
            node = node.setdefault(part, {"type": "collection", "properties": {}})["properties"]
        return node

    for name in leaf_fields(ExperimentSpec):
        value = value_at(spec, name)
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        owner = ExperimentSpec
        for part in name.split(".")[:-1]:
            owner = owner.model_fields[part].annotation
        field = owner.model_fields[name.rsplit(".", 1)[-1]]
        kind = _tao_type(value)
        prop: dict[str, Any] = {"type": kind, "default": value, "description": field.description or ""}
        offered = name in params and not _disabled(name, disabled)
        if offered:
            prop.update(_search_keys(params[name]))
        if not offered or name in defaults:  # an offered leaf without the flag is searched when named (TAO)
            prop["automl_enabled"] = offered
        section(name)[name.rsplit(".", 1)[-1]] = prop
    popular: dict[str, Any] = {}
    for name, value in (space.get("popular") or {}).items():
        node = popular
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return {
        "type": "object",
        "default": spec.to_dict(),
        "popular": popular,
        "automl_default_parameters": defaults,
        "automl_disabled_parameters": disabled,
        "properties": root,
        "x_tao_schema": {"action": action, "model": "mal", "network_arch": "mal", "schema_version": 1,
                         "source": "mal.spec and mal/search_space.yaml"},  # fmt: skip
    }
