"""Settings defined once: a typed dataclass field with its one-line description and the values it
allows (`setting(...)`), one validator, one `--key=value` parser, the `--help` listing made from the
fields, and nanoGPT's config files read without running them.

Every group of settings (training/config.py's TrainConfig, pipeline/configs.py's PipelineConfig, the
TokenizeText component's settings, serving/sample.py's options) is a dataclass of such fields. This
module imports nothing heavy, so that command lines check their arguments and answer --help at once.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import functools
import json
import os
import textwrap
import typing
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from core.errors import UserError


class SettingError(UserError, ValueError):
    """A wrong setting or command line: its message is one line naming the setting and what it allows."""


def setting(default: Any, help: str, *, choices: Optional[Sequence] = None, minimum: Optional[float] = None,
            maximum: Optional[float] = None, above: Optional[float] = None, below: Optional[float] = None,
            path: bool = False) -> Any:
    """A dataclass field with a one-line description and the values it allows: one of `choices`,
    >= minimum, <= maximum, > above, < below (None: unbounded). path: a file or directory (or a list of
    them), whose leading ~ a command line expands (`home_path`). List and dict defaults are copied
    per instance."""
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "minimum": minimum,
                "maximum": maximum, "above": above, "below": below, "path": path}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@functools.lru_cache(maxsize=None)
def _hints(cls) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def fields(cls) -> Dict[str, dataclasses.Field]:
    """The settings of a dataclass (or of an instance's class), by name, in definition order."""
    cls = cls if isinstance(cls, type) else type(cls)
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _optional(hint) -> Tuple[Any, bool]:
    """(the type inside Optional[...], whether it was Optional)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def type_name(hint) -> str:
    inner, optional = _optional(hint)
    origin = typing.get_origin(inner)
    name = {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict"}.get(
        origin or inner, str(inner))
    return name + ("|None" if optional else "")


def allowed(cls, name: str) -> str:
    """What a setting allows, in words: 'an int >= 1', 'one of float32, bfloat16, float16', ..."""
    field, hint = fields(cls)[name], _hints(cls if isinstance(cls, type) else type(cls))[name]
    meta = field.metadata
    inner, optional = _optional(hint)
    if meta.get("choices"):
        text = "one of " + ", ".join(str(c) for c in meta["choices"])
    else:
        text = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
                list: "a list", dict: "a dict"}.get(typing.get_origin(inner) or inner, type_name(inner))
        low = ("[", meta["minimum"]) if meta.get("minimum") is not None else \
            ("(", meta["above"]) if meta.get("above") is not None else None
        high = ("]", meta["maximum"]) if meta.get("maximum") is not None else \
            (")", meta["below"]) if meta.get("below") is not None else None
        if low and high:
            text += f" in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
        elif low:
            text += f" {'>=' if low[0] == '[' else '>'} {low[1]:g}"
        elif high:
            text += f" {'<=' if high[0] == ']' else '<'} {high[1]:g}"
    return text + (" (or None)" if optional else "")


def _coerce(cls, name: str, value: Any) -> Any:
    """`value` as the setting's type (an int stands for a float, a whole float such as 6e5 for an int;
    a tuple for a list), or SettingError."""
    inner, optional = _optional(_hints(cls)[name])
    if value is None:
        if optional:
            return None
    else:
        kind = typing.get_origin(inner) or inner
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, float) and value.is_integer():  # lr_decay_iters=6e5
            return int(value)
        if kind is list and isinstance(value, tuple):
            return list(value)
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):  # True is no int here
            strings_only = kind is list and typing.get_args(inner) == (str,)
            if not strings_only or all(isinstance(v, str) for v in value):
                return value
    raise SettingError(f"--{name}={value!r}: expected {allowed(cls, name)}")


def check(obj) -> None:
    """Check every setting of a dataclass instance against its type and allowed values, converting
    where the value stands for one (2 for 2.0); SettingError naming the first wrong one."""
    cls = type(obj)
    for name, field in fields(cls).items():
        value = _coerce(cls, name, getattr(obj, name))
        object.__setattr__(obj, name, value)
        meta = field.metadata
        if value is None or isinstance(value, (list, dict)):
            continue
        bad = (meta.get("choices") and value not in meta["choices"]) or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and (
                (meta.get("minimum") is not None and not value >= meta["minimum"])
                or (meta.get("maximum") is not None and not value <= meta["maximum"])
                or (meta.get("above") is not None and not value > meta["above"])
                or (meta.get("below") is not None and not value < meta["below"])))
        if bad:
            raise SettingError(f"--{name}={value!r}: expected {allowed(cls, name)}")


class Settings:
    """The base of every group of settings (a dataclass of `setting` fields that calls `check` when it
    is made): written once as JSON with its schema, the setting names and types, and read back typed
    wherever it goes (a component's execution property, the training process's request)."""

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def schema(cls) -> Dict[str, Any]:
        hints = _hints(cls)
        return {"name": cls.__name__, "fields": {name: type_name(hints[name]) for name in fields(cls)}}

    def to_json(self) -> str:
        return json.dumps({"schema": self.schema(), "values": self.to_dict()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        """The settings `to_json` wrote, checked as when they were made; SettingError when they were
        written with another schema (a spec compiled by another version of the project)."""
        data = json.loads(text)
        if data.get("schema") != cls.schema():
            theirs = (data.get("schema") or {}).get("fields", {})
            differ = sorted(set(theirs.items()) ^ set(cls.schema()["fields"].items()))
            raise SettingError(f"{cls.__name__} settings written with another schema (differing: "
                               f"{', '.join(f'{n}: {t}' for n, t in differ) or 'its name'}): compile or "
                               f"build the pipeline again with this version")
        return cls(**data["values"])


def unknown(name: str, known: Iterable[str], what: str = "setting") -> SettingError:
    """The error for a name that is not known, with the closest known names suggested."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    spell = (lambda n: f"--{n}") if what == "setting" else str
    if close:
        hint = f"; did you mean {' or '.join(spell(c) for c in close)}?"
    else:  # settings are too many to list here; presets are few
        hint = " (see --help)" if what == "setting" else f" (known: {', '.join(sorted(known))})"
    return SettingError(f"unknown {what} {spell(name) if what == 'setting' else repr(name)}{hint}")


def home_path(text: str) -> str:
    """A path from a command line with its leading ~ or ~user expanded, as a shell expands it in a word
    of its own but not after `--key=` (`--output=~/runs` would otherwise make a folder named ~)."""
    return os.path.expanduser(text) if text.startswith("~") else text


def parse_text(cls, name: str, text: str) -> Any:
    """A command-line value as the setting's type: strings as they are (--start=123 is the text
    "123"), a path's leading ~ expanded; numbers, booleans, lists and dicts as Python literals; None,
    NONE (as --help spells it) or nothing for an Optional setting (and any case of it for one that is
    not a string)."""
    value = _parse_text(cls, name, text)
    if fields(cls)[name].metadata.get("path"):
        return [home_path(v) for v in value] if isinstance(value, list) else \
            home_path(value) if isinstance(value, str) else value
    return value


def _parse_text(cls, name: str, text: str) -> Any:
    inner, optional = _optional(_hints(cls)[name])
    kind = typing.get_origin(inner) or inner
    # --help spells it NONE; a string setting's "none" may be a name (a file, a dataset's configuration)
    if optional and (text in ("None", "NONE", "") or (kind is not str and text.lower() == "none")):
        return None
    if kind is str:
        return text
    if kind is bool and text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        value = literal(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError):
        if kind is list:  # --baselines=gpt2,gpt2-medium
            return [part for part in text.split(",") if part]
        raise SettingError(f"--{name}={text}: expected {allowed(cls, name)}") from None
    return _coerce(cls, name, value)


def parse_overrides(argv: Sequence[str], *groups, extra: Sequence[str] = ()) -> Dict[str, Any]:
    """nanoGPT's `--key=value` arguments as {key: typed value}: each key is a setting of one of the
    dataclasses `groups` (the first that has it gives its type), or one of `extra` (kept as text).
    SettingError for anything else, with the closest names suggested."""
    owners = {}
    for group in groups:
        for name in fields(group):
            owners.setdefault(name, group)
    values = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            hint = f" ({arg}=VALUE: one argument, with no space)" if arg.startswith("--") else ""
            raise SettingError(f"expected --key=value, got {arg!r}{hint}")
        key, text = arg[2:].split("=", 1)
        if key in extra:
            values[key] = text
        elif key in owners:
            values[key] = parse_text(owners[key], key, text)
        else:
            raise unknown(key, [*owners, *extra])
    return values


def coerce_values(values: Dict[str, Any], *groups) -> Dict[str, Any]:
    """Python values (a preset's, a config file's) checked against the type of the setting of the
    first group that has it; SettingError for a wrong type."""
    out = {}
    for key, value in values.items():
        owner = next((g for g in groups if key in fields(g)), None)
        out[key] = value if owner is None else _coerce(owner, key, value)
    return out


def command_line(prog: str, argv: Sequence[str], build, help_text):
    """`build(argv)` for a command line; --help prints help_text(prog) and exits 0; a SettingError
    exits with status 2 and its one line, no traceback (errors.reported)."""
    from core.errors import reported

    if "-h" in argv or "--help" in argv:
        from core.console import print_out

        print_out(help_text(prog))
        raise SystemExit(0)
    with reported(prog):
        return build(list(argv))


def help_listing(cls, title: str, skip: Iterable[str] = (), width: int = 100) -> str:
    """The settings of a dataclass as an --help section: each with its type, default and description."""
    skip = set(skip)
    hints = _hints(cls)
    lines = [f"{title}:"]
    for name, field in fields(cls).items():
        if name in skip:
            continue
        meta = field.metadata
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        extra = f"; {allowed(cls, name)}" if meta.get("choices") or any(
            meta.get(k) is not None for k in ("minimum", "maximum", "above", "below")) else ""
        text = f"{meta.get('help', '')} (default: {default!r}{extra})"
        head = f"  --{name}={type_name(hints[name]).upper()}"
        body = textwrap.wrap(text, width - 34) or [""]
        first = head.ljust(33) + " " + body[0] if len(head) < 33 else head + "\n" + " " * 34 + body[0]
        lines.append(first)
        lines.extend(" " * 34 + line for line in body[1:])
    return "\n".join(lines)


_ARITHMETIC = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Pow: lambda a, b: a ** b}


def literal(node: ast.AST) -> Any:
    """The value of a literal expression: what ast.literal_eval accepts, and arithmetic on numbers
    (nanoGPT's train_gpt2.py says `gradient_accumulation_steps = 5 * 8`). Nothing is called or looked
    up; ValueError for anything else."""
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = literal(node.left), literal(node.right)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
        if numbers and not (isinstance(node.op, ast.Pow) and abs(right) > 64):
            return _ARITHMETIC[type(node.op)](left, right)
        raise ValueError("arithmetic on numbers only")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    return ast.literal_eval(node)


# --- nanoGPT's config files ------------------------------------------------------------------------

@dataclasses.dataclass
class ConfigFile:
    """A config file's `name = literal` assignments in order, and the statements that were not run."""
    path: str
    values: Dict[str, Any]
    lines: Dict[str, int]  # the line of each value
    skipped: List[Tuple[int, str, List[str]]]  # (line, statement, names it would have set)


def read_config_file(path: str) -> ConfigFile:
    """Read a nanoGPT config file (config/train_shakespeare_char.py ...) without executing it: its
    `name = literal` assignments; every other statement is returned in `skipped` with its line."""
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError as e:
        hint = "" if path.endswith(".py") else " (a setting is one argument, --key=value, with no space)"
        raise SettingError(f"config file {path}: {e.strerror or e}{hint}") from None
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise SettingError(f"{path}:{e.lineno}: not Python: {e.msg}") from None
    result = ConfigFile(path, {}, {}, [])
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if targets and len(names) == len(targets):
            try:
                value = literal(node.value)
            except ValueError:
                pass
            else:
                for name in names:
                    result.values[name], result.lines[name] = value, node.lineno
                continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        statement = ast.get_source_segment(source, node) or type(node).__name__
        result.skipped.append((node.lineno, statement.splitlines()[0], names))
    return result
