"""One config loader for every stage: a YAML run config, `--set` overrides and explicit flags,
typed and validated against the stage's own model (a stdlib dataclass) with pydantic.

A run config (configs/demo.yaml, configs/llama2-7b.yaml) is a mapping of sections, one per
stage; a stage reads its own and ignores the others. `SECTION_CLASSES` says which dataclass types
each section; `check_run_config` types every section of a file at once (the demo does, before its
first stage, so a typo in `eval:` is not found an hour later).

Precedence, lowest first: the model's defaults < the file's section < `--set` < explicit flags.
A stage command wires it like this:

    parser = argparse.ArgumentParser(...)
    add_config_arguments(parser, ("tokenizer",))  # --config FILE -> args.config; --set -> args.overrides
    parser.add_argument("--vocab-size", type=int)        # default None: "not given"
    args = parser.parse_args(argv)
    section = load_section(TokenizerConfig, "tokenizer", args.config, args.overrides, flags={"vocab_size": args.vocab_size})

Every error is `stagekit.errors.BadInput` with a one-line message. `read_section` gives plain YAML
data with --set applied, unvalidated (for callers that must tell set keys from defaults);
`load_section` the typed, validated section.

Typing is strict where a mistake hides and lenient where YAML is: an unknown key (`vocab_sise`)
is an error naming its dotted key and listing the valid ones; `true` is not a number, "abc" is
not an int; numbers YAML 1.1 reads as strings (`1e-4`, `1e3`) count as numbers; a number where a
string (a path, a name) is expected is taken as its text. `--set` values are parsed as YAML
(`--set 'pretrain.init={hf: DIR}'`, `--set eval.tasks=[nsmc]`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import importlib
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BeforeValidator, ConfigDict, Strict, ValidationError

from stagekit.config_errors import one_line, show, yaml_problem
from stagekit.errors import BadInput

# Each section of a run config, the commands that read it, and the dataclass that types it ("module:Class",
# imported by name only when a whole file is checked: stagekit builds on no stage).
SECTION_CLASSES: dict[str, str] = {
    "corpus": "corpus.config:CorpusConfig",  # kocpt corpus
    "tokenizer": "tokenizer.config:TokenizerConfig",  # kocpt tokenizer train / merge
    "model": "pretrain.config:ModelSection",  # kocpt pretrain, plan, demo (tiny model)
    "checkpoints": "checkpoints.config:CheckpointsConfig",  # kocpt checkpoints resize / convert
    "tokenize": "pipelines.tokenize_config:TokenizeSection",  # kocpt tokenize
    "pretrain": "pretrain.config:PretrainConfig",  # kocpt pretrain, plan
    "eval": "evaluation.config:EvalConfig",  # kocpt eval
    "cluster": "pretrain.plan:Cluster",  # kocpt plan
    "compare": "kocpt.compare_config:CompareSection",  # kocpt compare
}
SECTIONS: tuple[str, ...] = tuple(SECTION_CLASSES)


def section_class(section: str) -> type:
    """The dataclass that types `section` (SECTION_CLASSES)."""
    module, _, name = SECTION_CLASSES[section].partition(":")
    return getattr(importlib.import_module(module), name)


def check_run_config(path, overrides=()) -> list[str]:
    """Type every section of the file at `path` (with `--set` applied) by its class: unknown keys and wrong
    types are BadInput in one line, whichever stage reads them. A stage's own cross-field checks
    (`validate()`) are left to the stage, which may complete the section with its flags. Returns the
    sections found."""
    document = read_config_file(path) if path is not None else {}
    names = list(dict.fromkeys([*document, *(parse_override(text)[0] for text in overrides or ())]))
    for name in names:
        _checked(section_class(name), name, read_section(name, path, overrides))
    return names


def add_config_arguments(parser: argparse.ArgumentParser, sections: tuple[str, ...] = SECTIONS,
                         reads: str | None = None) -> None:
    """--config FILE and --set SECTION.KEY=VALUE (repeatable); explicit flags win over both. A `--set` for
    a section not in `sections` (those the command reads) is refused: it would be silently dropped.
    `reads`: what the command takes from the file, for --help."""
    assert set(sections) <= set(SECTIONS), sections
    read = ", ".join(sections) or "no section"
    parser.add_argument("--config", metavar="FILE",
                        help=f"YAML run config (e.g. configs/demo.yaml); this command reads {reads or read}")
    parser.add_argument("--set", dest="overrides", action=_SetItem, default=[], metavar="SECTION.KEY=VALUE",
                        sections=sections, help="override a config value (repeatable; dotted keys and list indices, "
                        f"YAML values), e.g. --set {(sections or SECTIONS)[0]}.KEY=VALUE; explicit flags win over it")


class _SetItem(argparse.Action):
    """Appends a --set item, checked as it is parsed; BadInput is one line (stagekit.entry)."""

    def __init__(self, option_strings, dest, sections=SECTIONS, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.sections = sections

    def __call__(self, parser, namespace, value, option_string=None):
        section = parse_override(value)[0]
        if section not in self.sections:
            raise BadInput(f"--set {value}: this command does not read the {section} section (it reads: "
                           f"{', '.join(self.sections) or 'no section'}); pass it to the stage that does")
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), value])


def config_file(positional: str | None, option: str | None, required: bool = False) -> str | None:
    """The run config of a command that takes a positional CONFIG (`kocpt plan`, `kocpt pretrain`) and, as
    every stage, `--config FILE`: either, or both naming the same file."""
    if positional and option and Path(positional).resolve() != Path(option).resolve():
        raise BadInput(f"two configs given: {positional} and --config {option} (give one)")
    chosen = positional or option
    if required and not chosen:
        raise BadInput("no config given: pass CONFIG or --config FILE (e.g. configs/llama2-7b.yaml)")
    return chosen


def check_config_arguments(path, overrides=()) -> None:
    """A command that reads no section still checks its file and `--set` items (no typo passes)."""
    if path is not None:
        read_config_file(path)
    for text in overrides or ():
        parse_override(text)


def read_config_file(path) -> dict:
    """The whole YAML file: a mapping whose keys are all in SECTIONS, each a mapping (or empty)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: config file is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise BadInput(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}), got {show(document)}")
    unknown = [str(name) for name in document if name not in SECTIONS]
    if unknown:
        raise BadInput(f"{path}: unknown section(s) {', '.join(unknown)} (valid sections: {', '.join(SECTIONS)})")
    for name, value in document.items():
        if value is not None and not isinstance(value, dict):
            raise BadInput(f"{path}: section {name}: expected a mapping of keys, got {show(value)}")
    return document


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, dotted key within the section, YAML-parsed value)."""
    key, equals, value_text = text.partition("=")
    section, dot, rest = key.strip().partition(".")
    if not equals or not dot or not rest:
        raise BadInput(f"--set {text}: expected SECTION.KEY=VALUE (e.g. tokenizer.vocab_size=8000)")
    if section not in SECTIONS:
        raise BadInput(f"--set {text}: unknown section {section!r} (valid sections: {', '.join(SECTIONS)})")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as exc:
        raise BadInput(f"--set {text}: the value is not valid YAML ({yaml_problem(exc)})") from None
    return section, rest, value


def read_section(section: str, path=None, overrides=()) -> dict:
    """The `section` of the file at `path` ({} when None) with the `--set` overrides for it applied.
    Every override must parse and name a valid section, whichever section it is for."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r} (valid sections: {', '.join(SECTIONS)})")
    document = read_config_file(path) if path is not None else {}
    data = copy.deepcopy(document.get(section) or {})
    for text in overrides or ():
        name, key, value = parse_override(text)
        if name == section:
            _assign(data, key, value, f"--set {text}")
    return data


def load_section(model, section: str, path=None, overrides=(), flags=None):
    """The typed, validated `section` of the config file at `path` (defaults when None), with
    `--set` overrides (`section.key=value`, dotted for nested keys and list indices, YAML-parsed values;
    overrides for other sections are ignored here but must name a valid section), then `flags`
    (a dict of key -> value from explicit command-line flags; None values mean "not given") win.
    `model` is a stdlib dataclass type. Unknown keys are BadInput naming the
    full dotted key and listing the valid keys; type errors name the dotted key, expected type and value.
    A dataclass's own `validate()` runs last (a ValueError from it becomes BadInput)."""
    data = read_section(section, path, overrides)
    given = {key: value for key, value in (flags or {}).items() if value is not None}
    if given:  # a bad value in the file is reported even where a flag replaces it
        _checked(model, section, data)
        for key, value in given.items():
            _assign(data, key, copy.deepcopy(value), f"{section}.{key}")
    checked = _checked(model, section, data)
    config = _adapter(model).validate_python(checked.model_dump(exclude_unset=True))
    if callable(getattr(config, "validate", None)):
        try:
            config.validate()
        except BadInput:
            raise
        except ValueError as exc:
            raise BadInput(f"{section}: {exc}") from None
    return config


def _checked(model, section: str, data: dict):
    """`data` validated by the strict pydantic mirror of `model` (a dataclass)."""
    try:
        return _mirror(model).model_validate(data)
    except ValidationError as exc:
        raise BadInput(one_line(exc, section, data, model)) from None


# --- applying overrides -----------------------------------------------------------------------


def _assign(tree: dict, dotted: str, value, where: str) -> None:
    """tree[a][b][0][c] = value for "a.b.0.c"; missing mappings are created, list items must exist."""
    keys = dotted.split(".")
    node: Any = tree
    for depth, key in enumerate(keys):
        here = ".".join(keys[:depth]) or "the section"
        if key == "":
            raise BadInput(f"{where}: empty key in {dotted!r}")
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise BadInput(f"{where}: {here} is a list of {len(node)} item(s); there is no item {key}")
            if last:
                node[int(key)] = value
                return
            node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
                return
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        else:
            raise BadInput(f"{where}: {here} is {show(node)}, not a mapping or a list")


# --- validation: a strict pydantic mirror of the stage's dataclass ----------------------------


def _int_like(value):
    """YAML 1.1 reads `1e3` as a string; an integral number written so (or as 2.0) is an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else value
    return value


def _float_like(value):
    """YAML 1.1 reads `1e-4` (no dot) as a string: accept number strings where a number is due."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _str_like(value):
    """A path or a name that happens to be a number (a run dir `2024`) is its text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


# Strict: `true` is neither an int nor a number, "abc" no int, 3 no list; the converters above run first.
_SCALARS = {
    int: Annotated[int, BeforeValidator(_int_like), Strict()],
    float: Annotated[float, BeforeValidator(_float_like), Strict()],
    str: Annotated[str, BeforeValidator(_str_like), Strict()],
}
_MIRROR_CONFIG = ConfigDict(extra="forbid", strict=True, protected_namespaces=())


def _mirror_type(hint):
    if dataclasses.is_dataclass(hint):
        return _mirror(hint)
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_mirror_type(arg) for arg in args)]
    if origin in (list, tuple):  # YAML has lists only; the dataclass gets its tuple afterwards
        return list[_mirror_type(args[0])] if args else list
    if origin is dict and args:
        return dict[_mirror_type(args[0]), _mirror_type(args[1])]
    return hint


@functools.cache
def _mirror(cls) -> type[pydantic.BaseModel]:
    """A pydantic model with `cls`'s fields, strict types and extra="forbid", nested dataclasses
    mirrored too. Only the keys given are validated and then passed on, so `cls`'s own defaults
    (and default factories) fill the rest."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {}
    for item in dataclasses.fields(cls):
        if item.init:
            required = item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
            fields[item.name] = (_mirror_type(hints[item.name]), ... if required else None)
    return pydantic.create_model(cls.__name__, __config__=_MIRROR_CONFIG, **fields)


@functools.cache
def _adapter(cls) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(cls)
