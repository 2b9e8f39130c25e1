"""One formatter for every user-facing error: scenario files, sweep files and the model.

A message is one paragraph: ``<file>: <n> problem(s): <path> = <value>: <what is allowed>;
...``. Paths are written as in the file, ``clients[0].behaviour_params.mode`` (a key that
holds dots itself, like a sweep's grid key, is quoted: ``grid["rewards.policy"]``). Values
are cut to a short excerpt, so a huge value never makes a huge message.

The CLI prints `ScenarioError` texts and exits with code 2.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = [
    "MAX_SHOWN",
    "FieldProblem",
    "ScenarioError",
    "allowed_text",
    "format_problems",
    "format_validation_error",
    "join_path",
    "problem_text",
    "shown",
]

#: Longest excerpt of a value shown in a message (characters).
MAX_SHOWN = 80


class ScenarioError(ValueError):
    """A scenario or sweep file that cannot be run; `str()` is the user-facing paragraph."""


class FieldProblem(ValueError):
    """Raised inside validators: one or more problems at paths relative to the validated
    object (``""`` is the object itself). The formatter prefixes the object's own path.

    `problems` is a list of ``(path, value, allowed)``.
    """

    def __init__(self, path: str, value: Any = None, allowed: str = "", *,
                 problems: Sequence[tuple[str, Any, str]] | None = None) -> None:
        self.problems = list(problems) if problems is not None else [(path, value, allowed)]
        super().__init__("; ".join(a for _, _, a in self.problems))


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """A short, readable excerpt of a value: JSON for mappings and lists, repr otherwise; at
    most `limit` characters, ending in "..." when cut.

    Never builds the whole text of a large value: containers are walked only until `limit`
    characters are out (a value reached through YAML aliases may stand for millions), long
    strings are cut before they are quoted, and integers too long to print (repr refuses
    more than 4,300 digits) are described by their size.
    """
    out: list[str] = []
    room = limit + 1

    class _Full(Exception):
        pass

    def emit(text: str) -> None:
        nonlocal room
        out.append(text[:room])
        room -= len(text)
        if room <= 0:
            raise _Full

    def scalar(v: Any, inside: bool) -> str:
        if isinstance(v, str):
            v = v[: limit + 1]
            return json.dumps(v) if inside else repr(v)
        if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 128:
            return f"<an integer of about {int(v.bit_length() * 0.30103) + 1} digits>"
        if inside and (v is None or isinstance(v, bool | int | float)):
            return json.dumps(v)
        return repr(v) if not inside else json.dumps(str(v))

    def walk(v: Any, inside: bool) -> None:
        if isinstance(v, dict):
            emit("{")
            for i, (k, x) in enumerate(v.items()):
                emit(", " if i else "")
                emit(json.dumps(str(k)) + ": ")
                walk(x, True)
            emit("}")
        elif isinstance(v, list | tuple):
            emit("[")
            for i, x in enumerate(v):
                emit(", " if i else "")
                walk(x, True)
            emit("]")
        else:
            emit(scalar(v, inside))

    with contextlib.suppress(_Full):
        walk(value, False)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join_path(*parts: Any) -> str:
    """``("clients", 0, "behaviour_params.mode") -> "clients[0].behaviour_params.mode"``."""
    out = ""
    for part in parts:
        if part is None or part == "":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        part = str(part)
        if part.startswith("["):
            out += part
        else:
            out += ("." if out else "") + part
    return out


def format_problems(source: str, problems: Iterable[tuple[str, Any, str]]) -> str:
    """The one paragraph for a list of ``(path, value, allowed)``; value ``...`` hides it."""
    parts = []
    for path, value, allowed in problems:
        head = path or "(top level)"
        shown_value = "" if value is ... else f" = {shown(value)}"
        parts.append(f"{head}{shown_value}: {allowed}")
    n = len(parts)
    return f"{source}: {'a problem' if n == 1 else f'{n} problems'}: " + "; ".join(parts) + "."


def problem_text(source: str, path: str, value: Any, allowed: str) -> str:
    """One problem as the paragraph (`format_problems` of one)."""
    return format_problems(source, [(path, value, allowed)])


def format_validation_error(exc: ValidationError, source: str,
                            model: type[BaseModel] | None = None) -> str:
    """Pydantic's error list as one paragraph. `model` (the validated class) lets an unknown
    key's message list the keys allowed there."""
    problems: list[tuple[str, Any, str]] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        loc = _user_loc(err["loc"])
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, FieldProblem) or hasattr(ctx_err, "problems"):
            for rel, value, allowed in ctx_err.problems:
                problems.append((join_path(*loc, rel), value, allowed))
            continue
        path = join_path(*loc)
        if path in seen:  # one message per field (a union reports each alternative)
            continue
        seen.add(path)
        if err["type"] == "extra_forbidden":
            keys = _keys_at(model, loc[:-1]) if model is not None else []
            hint = f"allowed here: {', '.join(keys)}" if keys else "check the spelling"
            problems.append((path, ..., f"unknown field ({hint}; unknown keys are refused)"))
        elif err["type"] == "missing":
            problems.append((path, ..., "required"))
        else:
            problems.append((path, err.get("input"), allowed_text(err)))
    return format_problems(source, problems)


def allowed_text(err: dict[str, Any]) -> str:
    """What pydantic's error `err` says is allowed, in the words of these messages."""
    if err["type"] == "literal_error":
        return f"allowed values are {(err.get('ctx') or {}).get('expected', '')}"
    if err["type"] in ("finite_number", "float_parsing") or (
        isinstance(err.get("input"), float) and err["input"] != err["input"]
    ):
        return "not a finite number"
    if err["type"] in _BOUNDS:
        # pydantic prints 1e15 as 1000000000000000 and 1e-9 as 0.000000001.
        key, words = _BOUNDS[err["type"]]
        bound = (err.get("ctx") or {}).get(key)
        text = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"input should be {words} {text}"
    msg = re.sub(r"^(Value|Assertion) error, ", "", err["msg"])
    return msg[:1].lower() + msg[1:]


_BOUNDS = {"greater_than": ("gt", "greater than"),
           "greater_than_equal": ("ge", "greater than or equal to"),
           "less_than": ("lt", "less than"),
           "less_than_equal": ("le", "less than or equal to")}


#: Parts of pydantic's locations that name its own machinery, not the user's keys.
_INTERNAL = re.compile(r"^(function-|literal\[|int$|float$|str$|bool$|list\[|dict\[|tagged-union)")


def _user_loc(loc: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for part in loc:
        if isinstance(part, int):
            out.append(part)
        elif _INTERNAL.match(str(part)):
            continue
        elif "." in str(part):
            out.append(f'["{part}"]')
        else:
            out.append(part)
    return out


def _keys_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The field names of the model found by walking `loc` from `model` ([] if unknown)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_in(fields[part].annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
