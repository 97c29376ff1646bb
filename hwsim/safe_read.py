"""Reading user files at the boundary: bounded size, UTF-8 text, no duplicate keys, no alias
bombs, and errors that quote a short excerpt instead of the whole value.

PyYAML's safe loader shares aliased nodes instead of copying them, so a nested-alias ("billion
laughs") document is small in memory but enormous to anything that walks it (validation, error
messages). :func:`load_yaml` counts the nodes the document stands for once aliases are
expanded, without expanding them, and refuses a document over :data:`MAX_EXPANDED_NODES`.
"""

from __future__ import annotations

import json
import reprlib
from pathlib import Path
from typing import Any

import yaml

from hwsim.errors import ProfileError

MAX_FILE_BYTES = 4 * 1024 * 1024  # profiles and scenarios are a few kB; traces are CSV
MAX_EXPANDED_NODES = 200_000  # nodes after alias expansion (a large scenario has ~1,000)
EXCERPT_CHARS = 80


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple = 2, 4, 4, 4
    short.maxstring, short.maxother = EXCERPT_CHARS, EXCERPT_CHARS
    return short


_SHORT = _short_repr()


def excerpt(value: Any) -> str:
    """A repr of ``value`` a few dozen characters long, whatever its size (nested lists and
    dicts are elided with '...', long strings cut): safe to put in an error message."""
    text = _SHORT.repr(value)
    return text if len(text) <= 2 * EXCERPT_CHARS else text[: 2 * EXCERPT_CHARS] + "..."


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``; a missing file, a directory, a file over ``max_bytes``, a
    binary or non-UTF-8 file is a :class:`ProfileError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ProfileError(f"is a directory; expected a {what}", file=str(path))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ProfileError(
                f"{size:,} bytes is over the {max_bytes:,}-byte limit for a {what}",
                file=str(path),
            )
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ProfileError(f"file not found ({exc.strerror})", file=str(path)) from None
    except OSError as exc:
        raise ProfileError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    if b"\x00" in data:
        raise ProfileError(f"binary file (contains NUL bytes); expected a {what}", file=str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"expected a {what}",
            file=str(path),
        ) from None


# LibYAML's parser where PyYAML was built with it (about ten times faster than the pure-Python
# one; the same safe constructor builds the values)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SAFE_LOADER):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses duplicate mapping keys (YAML 1.2 says keys are unique)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' merges, not a key
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let the base class report it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {excerpt(key)} (first at line {seen[key].line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def expanded_size(node: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """Nodes the document stands for with every alias expanded (memoised on shared nodes, so
    counting costs one pass however large the expansion); stops counting past ``limit``."""
    memo: dict[int, int] = {}

    def count(n: yaml.Node) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        memo[key] = limit + 1  # a cycle (recursive alias) counts as too large
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += count(k) + count(v)
                if total > limit:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for item in n.value:
                total += count(item)
                if total > limit:
                    break
        memo[key] = min(total, limit + 1)
        return memo[key]

    return count(node)


def load_yaml(text: str, file: str) -> Any:
    """Parse YAML ``text`` strictly (see the module docstring); errors name ``file``."""
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if expanded_size(node) > MAX_EXPANDED_NODES:
                raise ProfileError(
                    f"aliases expand to more than {MAX_EXPANDED_NODES:,} values "
                    "(an alias bomb?); write the values out or use fewer nested aliases",
                    file=file,
                )
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProfileError(
            f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}", file=file
        ) from None
    except RecursionError:
        raise ProfileError("YAML nested too deeply", file=file) from None


def load_json_object(text: str, file: str) -> dict[str, Any]:
    """Parse a JSON object, refusing duplicate keys and non-finite numbers (NaN, Infinity)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ProfileError(f"duplicate key {excerpt(key)}", file=file)
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise ProfileError(f"{name} is not a JSON number; give a finite value", file=file)

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise ProfileError(
            f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=file
        ) from None
    except RecursionError:
        raise ProfileError("JSON nested too deeply", file=file) from None
    if not isinstance(data, dict):
        raise ProfileError("expected a JSON object at the top level", file=file)
    return data
