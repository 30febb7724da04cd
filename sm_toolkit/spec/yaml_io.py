"""Bounded, safe reading of a spec file: YAML that cannot hang, exhaust memory or crash.

A spec is a small hand-written file, so the loader refuses what such a file never needs:
more than ``MAX_BYTES``, bytes that are not UTF-8 (a binary file, UTF-16), YAML aliases
(``*name``: the "billion laughs" expansion needs them), nesting deeper than ``MAX_DEPTH``
(PyYAML's composer recurses once per level) and a key given twice in one mapping (PyYAML
would silently keep the last one). Every refusal is one ``ConfigError`` line.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from sm_toolkit.errors import ConfigError

MAX_BYTES = 256 * 1024  # the largest example is under 2 KiB
MAX_DEPTH = 20  # the deepest example nests 4 levels


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with a depth limit and duplicate keys refused."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                "spec",
                f"*{event.anchor}",
                f"no YAML aliases (line {event.start_mark.line + 1}); write the value out",
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise ConfigError(
                "spec", f"nesting at line {line}", f"at most {MAX_DEPTH} levels of nesting"
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: PyYAML reports it below
                    continue
                if duplicate:
                    raise ConfigError(
                        str(key),
                        "given twice",
                        f"each key once per mapping (line {key_node.start_mark.line + 1})",
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_text(path: Path) -> str:
    """The file's text: at most MAX_BYTES, UTF-8 (a BOM is allowed), no NUL bytes."""
    if path.exists() and stat.S_ISFIFO(path.stat().st_mode):  # opening one would block
        raise ConfigError("spec", str(path), "a YAML file (this is a named pipe)")
    try:
        with path.open("rb") as f:  # a bounded read: /dev/zero or a huge file stops here
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError("spec", str(path), f"a readable YAML file ({exc.strerror})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError("spec", str(path), f"a YAML file of at most {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "spec", str(path), f"a UTF-8 text file (byte {exc.start} is not UTF-8)"
        ) from None
    if "\x00" in text:
        raise ConfigError("spec", str(path), "a UTF-8 text file (it holds NUL bytes)")
    return text


def load_yaml(text: str, source: str = "spec") -> Any:
    """Parse one YAML document with the loader's bounds; errors name the line."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except ConstructorError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark else "the file"
        raise ConfigError(
            "spec", source, f"plain YAML: no tags or unhashable keys (error at {where})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "the file"
        raise ConfigError("spec", source, f"valid YAML (error at {where})") from None
    except RecursionError:  # a safety net: the depth limit should stop it first
        raise ConfigError("spec", source, f"at most {MAX_DEPTH} levels of nesting") from None
    finally:
        loader.dispose()
