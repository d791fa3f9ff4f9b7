"""One-line messages for stagekit.config: a pydantic ValidationError of a section, said with the dotted
keys of the user's YAML (unknown keys with the valid ones, wrong types with what was expected)."""

from __future__ import annotations

import dataclasses
import types
import typing

import yaml
from pydantic import ValidationError

_EXPECTED = {
    "int_type": "int", "int_parsing": "int", "int_from_float": "int",
    "float_type": "a number", "float_parsing": "a number",
    "string_type": "str", "bool_type": "true or false", "bool_parsing": "true or false",
    "list_type": "a list", "tuple_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping", "none_required": "null",
}


def one_line(exc: ValidationError, section: str, data: dict, model) -> str:
    unknown: dict[tuple, list[str]] = {}
    others: dict[tuple, list[dict]] = {}
    for error in exc.errors(include_url=False):
        path = tuple(_data_path(data, error["loc"], error["type"]))
        if error["type"] == "extra_forbidden":
            unknown.setdefault(path[:-1], []).append(str(path[-1]))
        else:
            others.setdefault(path, []).append(error)
    messages = []
    for parent, keys in unknown.items():
        where = _dotted(section, parent)
        valid = field_names(_type_at(model, parent))
        messages.append(f"{where}: unknown key(s) {', '.join(keys)} ({', '.join(f'{where}.{k}' for k in keys)}); "
                        f"valid keys: {', '.join(valid)}")
    for path, errors in others.items():
        where = _dotted(section, path)
        kinds = [error["type"] for error in errors]
        if "missing" in kinds:
            messages.append(f"{where}: required")
        elif all(kind in _EXPECTED for kind in kinds):
            expected = " or ".join(dict.fromkeys(_EXPECTED[kind] for kind in kinds))
            messages.append(f"{where}: expected {expected}, got {show(errors[0]['input'])}")
        else:
            messages.append(f"{where}: {errors[0]['msg']}")
    more = f"; and {len(messages) - 3} more" if len(messages) > 3 else ""
    return "; ".join(messages[:3]) + more


def _data_path(data, loc: tuple, kind: str) -> list:
    """pydantic's location minus the names it gives union members ('str', 'list[str]', ...)."""
    path, node = [], data
    for position, item in enumerate(loc):
        if isinstance(node, dict) and item in node:
            path.append(item)
            node = node[item]
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            path.append(item)
            node = node[item]
        elif kind == "missing" and position == len(loc) - 1:
            path.append(item)
    return path


def _dotted(section: str, path) -> str:
    return ".".join([section, *map(str, path)])


def _unwrap(hint):
    """The member of `X | None` (or of another union) that can hold keys or items."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        containers = [arg for arg in members if field_names(arg) or typing.get_origin(arg) in (list, tuple, dict)]
        return (containers or members)[0]
    return hint


def _type_at(model, path):
    hint = model
    for item in path:
        hint = _unwrap(hint)
        if dataclasses.is_dataclass(hint):
            hint = typing.get_type_hints(hint)[item]
        elif typing.get_origin(hint) in (list, tuple):
            hint = typing.get_args(hint)[0]
        elif typing.get_origin(hint) is dict:
            hint = typing.get_args(hint)[1]
        else:
            return None
    return _unwrap(hint)


def field_names(hint) -> list[str]:
    if dataclasses.is_dataclass(hint):
        return [item.name for item in dataclasses.fields(hint) if item.init]
    return []


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem
