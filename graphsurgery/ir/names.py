"""Tensor and input names: the only place that parses ``name:1`` and ``^name``.

In a GraphDef a node's inputs are strings: ``"x"`` (output 0 of node ``x``), ``"x:1"``
(output 1) and ``"^x"`` (a control dependency on ``x``). Passes never slice these strings
themselves; they use :class:`TensorRef` and :class:`Input`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import GraphError

_NODE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/>]*$")


def is_valid_node_name(name: str) -> bool:
    return bool(_NODE_NAME.match(name))


@dataclass(frozen=True, order=True)
class TensorRef:
    """Output ``port`` of node ``node``."""

    node: str
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> TensorRef:
        """Parse ``"x"``, ``"x:0"`` or ``"x:2"``; control inputs are rejected."""
        return _parse_ref(cls, text)

    @classmethod
    def _parse(cls, text: str) -> TensorRef:
        if text.startswith("^"):
            raise GraphError(f"{text!r} is a control input, not a tensor")
        node, sep, port = text.rpartition(":")
        if sep and port.isdigit() and node:
            return cls(node, int(port))
        return cls(text, 0)

    @property
    def input_string(self) -> str:
        """The spelling used in ``NodeDef.input`` (port 0 is written without suffix)."""
        return self.node if self.port == 0 else f"{self.node}:{self.port}"

    def __str__(self) -> str:
        return f"{self.node}:{self.port}"


@dataclass(frozen=True)
class Input:
    """One entry of ``NodeDef.input``: a data input (a tensor) or a control input."""

    node: str
    port: int = 0
    control: bool = False

    @classmethod
    def parse(cls, text: str) -> Input:
        return _parse_input(cls, text)

    @classmethod
    def _parse(cls, text: str) -> Input:
        if text.startswith("^"):
            return cls(text[1:], 0, True)
        ref = TensorRef.parse(text)
        return cls(ref.node, ref.port, False)

    @property
    def tensor(self) -> TensorRef:
        if self.control:
            raise GraphError(f"^{self.node} is a control input, not a tensor")
        return TensorRef(self.node, self.port)

    def __str__(self) -> str:
        return f"^{self.node}" if self.control else TensorRef(self.node, self.port).input_string


# Both classes are immutable, so a parsed name can be shared: a pipeline parses the same few
# thousand input strings tens of thousands of times.
@lru_cache(maxsize=1 << 16)
def _parse_ref(cls: type[TensorRef], text: str) -> TensorRef:
    return cls._parse(text)


@lru_cache(maxsize=1 << 16)
def _parse_input(cls: type[Input], text: str) -> Input:
    return cls._parse(text)


def source_node(text: str) -> str:
    """The node named by an input string (``"x"``, ``"x:1"``, ``"^x"``): a fast path for
    loops over every edge of a graph (node names cannot contain ``:``)."""
    if text[0] == "^":
        return text[1:]
    i = text.rfind(":")
    return text if i < 0 else text[:i]


def control(node: str) -> str:
    """The input string for a control dependency on ``node``."""
    return f"^{node}"


class NameGenerator:
    """Hands out node names that are not yet taken, ``base``, ``base_1``, ``base_2``, ..."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self._taken = taken if taken is not None else set()
        self._next: dict[str, int] = {}

    def __call__(self, base: str) -> str:
        base = base.strip("/") or "node"
        if base not in self._taken:
            self._taken.add(base)
            return base
        i = self._next.get(base, 1)
        while f"{base}_{i}" in self._taken:
            i += 1
        self._next[base] = i + 1
        name = f"{base}_{i}"
        self._taken.add(name)
        return name

    def release(self, name: str) -> None:
        self._taken.discard(name)
