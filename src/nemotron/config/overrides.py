"""The one override grammar: ``a.b=c`` (value parsed as YAML), ``~a.b`` deletes.

Overrides are applied to the merged recipe dict before it is decoded into typed models, so a
mistyped key is caught by the schema, which names the dotted path and the closest valid key.
Applying an override under a key that does not exist yet is allowed here (the schema decides).
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nemotron.errors import UserError

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")  # 1e-3, which YAML 1.1 leaves a str
_KEY = re.compile(r"^[^\W\d][\w\-]*(\.[\w\-]+)*$")  # any letters: the schema names unknown keys
_INT64 = 2**63


@dataclass(frozen=True)
class Override:
    path: tuple[str, ...]
    value: Any = None
    delete: bool = False

    @property
    def key(self) -> str:
        return ".".join(self.path)


def looks_like_override(arg: str) -> bool:
    """True for ``key=value`` and ``~key`` arguments (as opposed to options and plain words)."""
    if arg.startswith("~"):
        return bool(_KEY.match(arg[1:]))
    head, sep, _ = arg.partition("=")
    return bool(sep) and bool(_KEY.match(head))


def parse_override(arg: str) -> Override:
    """Parse one ``key=value`` or ``~key`` argument."""
    if arg.startswith("~"):
        key = arg[1:]
        if not _KEY.match(key):
            raise UserError(f"invalid override '{arg}': '{key}' is not a dotted key")
        return Override(tuple(key.split(".")), delete=True)
    key, sep, raw = arg.partition("=")
    if not sep or not _KEY.match(key):
        raise UserError(
            f"invalid override '{arg}'", hint="write key=value (e.g. train.train_iters=50) or ~key"
        )
    if raw == "":
        value: Any = ""
    else:
        value = _parse_value(key, raw)
        if isinstance(value, str) and _FLOAT.match(value):
            value = float(value)
        _check_range(key, raw, value)
    return Override(tuple(key.split(".")), value)


def _shown(raw: str) -> str:
    return raw if len(raw) <= 40 else f"{raw[:20]}...{raw[-10:]} ({len(raw)} characters)"


def _parse_value(key: str, raw: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise UserError(f"invalid override {key}={_shown(raw)}: the value is not YAML ({problem})",
                        hint=f"quote text: {key}='\"...\"'; lists are [a, b], maps {{k: v}}"
                        ) from None
    except ValueError:  # an integer beyond Python's digit limit (thousands of digits)
        raise UserError(f"invalid override {key}={_shown(raw)}: the number is out of range",
                        hint="numbers must fit in 64 bits") from None


def _check_range(key: str, raw: str, value: Any, inside: tuple[int, ...] = (),
                 done: set[int] | None = None) -> None:
    """Integers must fit in 64 bits; a float may not overflow to infinity (``1e999``); a YAML
    alias may not make a value contain itself (``&a [*a]``). Each container is checked once, so
    aliases repeated many times (``[*a, *a, ...]`` nested) cost nothing more."""
    done = set() if done is None else done
    if isinstance(value, dict | list):
        if id(value) in inside:
            raise UserError(f"invalid override {key}={_shown(raw)}: a YAML alias makes the "
                            "value contain itself", hint="write the value out without &/*")
        if id(value) in done:
            return
        done.add(id(value))
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            _check_range(key, raw, item, (*inside, id(value)), done)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT64:
        raise UserError(f"invalid override {key}={_shown(raw)}: the number is out of range",
                        hint="numbers must fit in 64 bits")
    elif isinstance(value, float) and value in (float("inf"), float("-inf")) \
            and "inf" not in raw.lower():
        raise UserError(f"invalid override {key}={_shown(raw)}: the number is out of range",
                        hint="floats must be finite (at most about 1.8e308)")


def apply_overrides(config: dict[str, Any], overrides: Iterable[Override]) -> dict[str, Any]:
    """Return a copy of ``config`` with the overrides applied in order.

    A numeric path part indexes a list (``data.sources.0.sample=500``); it must name an element
    that exists (replace the whole list with ``data.sources=[...]`` to add one).
    """
    result = copy.deepcopy(config)
    for ov in overrides:
        node: Any = result
        for depth, part in enumerate(ov.path[:-1]):
            child = _child(node, part, ov, depth)
            if child is None and not ov.delete and isinstance(node, dict):
                child = node[part] = {}
            if not isinstance(child, (dict, list)):
                where = ".".join(ov.path[: depth + 1])
                if child is None:
                    raise UserError(f"cannot delete {ov.key}: {where} is not set")
                raise UserError(
                    f"cannot set {ov.key}: {where} is a {type(child).__name__}, not a mapping"
                )
            node = child
        _set_leaf(node, ov)
    return result


def _child(node: Any, part: str, ov: Override, depth: int) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, ov, depth)]
    return node.get(part)


def _index(node: list, part: str, ov: Override, depth: int) -> int:
    where = ".".join(ov.path[:depth]) or "the config"
    if not part.isdigit():
        raise UserError(f"cannot use {ov.key}: {where} is a list; index it with a number",
                        hint=f"e.g. {where}.0")
    index = int(part)
    if index >= len(node):
        raise UserError(
            f"cannot use {ov.key}: {where} has {len(node)} element(s) (indices from 0)",
            hint=f"to add elements, replace the whole list: {where}=[...]",
        )
    return index


def _set_leaf(node: Any, ov: Override) -> None:
    leaf = ov.path[-1]
    if isinstance(node, list):
        index = _index(node, leaf, ov, len(ov.path) - 1)
        if ov.delete:
            del node[index]
        else:
            node[index] = ov.value
        return
    if ov.delete:
        if leaf not in node:
            close = difflib.get_close_matches(leaf, list(node), n=1)
            hint = f"did you mean ~{'.'.join((*ov.path[:-1], close[0]))}?" if close else None
            raise UserError(f"cannot delete {ov.key}: it is not set", hint=hint)
        del node[leaf]
    else:
        node[leaf] = ov.value


def get_path(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


_REF = re.compile(r"\$\{([^}]+)\}")


def interpolate(config: dict[str, Any], resolve_art=None) -> dict[str, Any]:
    """Resolve ``${a.b}`` (another key of the config) and ``${art:input,field}`` references.

    A string that is exactly one reference takes the referenced value's type; references inside
    longer strings are formatted in. ``resolve_art(input_name, field)`` answers ``art:`` refs; when
    it is None they are left as they are (so a config validates before its inputs are resolved).
    """

    def lookup(expr: str, seen: tuple[str, ...]) -> Any:
        expr = expr.strip()
        if expr.startswith("art:"):
            if resolve_art is None:
                return None
            name, _, field = expr[4:].partition(",")
            return resolve_art(name.strip(), field.strip() or "path")
        if expr in seen:
            raise UserError(f"interpolation cycle: {' -> '.join((*seen, expr))}")
        try:
            value = get_path(config, expr)
        except KeyError:
            raise UserError(f"${{{expr}}} refers to a key that is not set") from None
        return walk(value, (*seen, expr))

    def walk(value: Any, seen: tuple[str, ...] = ()) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, seen) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, seen) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _REF.fullmatch(value)
        if whole:
            got = lookup(whole.group(1), seen)
            return value if got is None and whole.group(1).strip().startswith("art:") else got

        def sub(match: re.Match) -> str:
            got = lookup(match.group(1), seen)
            return match.group(0) if got is None else str(got)

        return _REF.sub(sub, value)

    return walk(config)
