"""Request messages built from the proto descriptors alone, so every field of every request of
every service is covered without a hand-written list. A `Source` supplies the choices: a
Hypothesis draw (property tests) or libFuzzer's bytes (the atheris fuzz run, fuzz.py).

Values lean towards what reaches past validation (archetypes, catalog ids and names, small
counts, plausible days) and towards the edges (empty, blank, huge, NaN, unknown enum numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st

from pantree_common.descriptors import SERVICES
from pantree_common.domain.catalog import builtin_catalog
from services.simulation.simulator import archetype_protos

F = descriptor.FieldDescriptor
MAX_DEPTH = 4
MAX_REPEATED = 12
CATALOG = builtin_catalog().products[:20]
WORDS: tuple[str, ...] = (
    "",
    " ",
    "milk",
    "eggs",
    *(a.archetype_id for a in archetype_protos()),
    *(p.product_id for p in CATALOG),
    *(p.name for p in CATALOG),
    *(p.category for p in CATALOG),
    "\u0000",
    "ü🥛\u202e",
)
INTEGER_HINTS = (0, 1, -1, 2, 3, 6, 12, 24, 25, 100, 20_000, 20_500)
INT_RANGES = {
    F.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    F.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    F.CPPTYPE_UINT32: (0, 2**32 - 1),
    F.CPPTYPE_UINT64: (0, 2**64 - 1),
}


class Source(Protocol):
    """Where the builder's choices come from."""

    def flag(self) -> bool: ...

    def count(self, most: int) -> int: ...

    def integer(self, low: int, high: int) -> int: ...

    def real(self) -> float: ...

    def text(self) -> str: ...

    def data(self) -> bytes: ...

    def pick(self, options: Sequence[Any]) -> Any: ...


def methods() -> list[tuple[str, descriptor.MethodDescriptor]]:
    """Every RPC of every service as (full path, descriptor)."""
    return [
        (f"/{service.full_name}/{method.name}", method)
        for service in SERVICES.values()
        for method in service.methods
    ]


def build(message_type: descriptor.Descriptor, source: Source, depth: int = 0) -> Message:
    message: Message = message_factory.GetMessageClass(message_type)()
    fill(message, source, depth)
    return message


def fill(message: Message, source: Source, depth: int) -> None:
    """Set a random subset of the message's fields (one member of each oneof at most)."""
    chosen = {oneof.name: source.pick([None, *oneof.fields]) for oneof in message.DESCRIPTOR.oneofs}
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if (oneof is not None and chosen[oneof.name] is not field) or not source.flag():
            continue
        if field.message_type is not None and depth >= MAX_DEPTH:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entries = getattr(message, field.name)
            key, value = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            for _ in range(source.count(MAX_REPEATED)):
                if value.message_type is not None:
                    fill(entries[scalar(key, source)], source, depth + 1)
                else:
                    entries[scalar(key, source)] = scalar(value, source)
        elif field.is_repeated:
            values = getattr(message, field.name)
            for _ in range(source.count(MAX_REPEATED)):
                if field.message_type is not None:
                    fill(values.add(), source, depth + 1)
                else:
                    values.append(scalar(field, source))
        elif field.message_type is not None:
            child = getattr(message, field.name)
            child.SetInParent()
            fill(child, source, depth + 1)
        else:
            setattr(message, field.name, scalar(field, source))


def scalar(field: F, source: Source) -> Any:
    kind = field.cpp_type
    if kind == F.CPPTYPE_BOOL:
        return source.flag()
    if kind in (F.CPPTYPE_DOUBLE, F.CPPTYPE_FLOAT):
        return source.real()
    if kind == F.CPPTYPE_STRING:
        return source.data() if field.type == F.TYPE_BYTES else source.text()
    if kind == F.CPPTYPE_ENUM:
        numbers = [value.number for value in field.enum_type.values]
        return source.pick([*numbers, max(numbers) + 1, -1])  # open enums take unknown numbers
    return source.integer(*INT_RANGES[kind])


class DrawSource:
    """A Source over Hypothesis's `draw` (inside @st.composite)."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self._draw = draw

    def flag(self) -> bool:
        return bool(self._draw(st.booleans()))

    def count(self, most: int) -> int:
        return int(self._draw(st.integers(0, most) | st.just(1)))

    def integer(self, low: int, high: int) -> int:
        hints = [h for h in INTEGER_HINTS if low <= h <= high]
        return int(self._draw(st.sampled_from([*hints, low, high]) | st.integers(low, high)))

    def real(self) -> float:
        return float(self._draw(st.floats() | st.sampled_from([0.0, 1.0, 3.89, 1e308, -1.0])))

    def text(self) -> str:
        return str(
            self._draw(
                st.sampled_from(WORDS)
                | st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
                | st.builds(lambda n: "x" * n, st.integers(200, 5000))
            )
        )

    def data(self) -> bytes:
        return bytes(self._draw(st.binary(max_size=64)))

    def pick(self, options: Sequence[Any]) -> Any:
        return self._draw(st.sampled_from(options))


@st.composite
def requests(
    draw: Callable[[st.SearchStrategy[Any]], Any], method: descriptor.MethodDescriptor
) -> Message:
    """A request message of `method`, built from its descriptor."""
    return build(method.input_type, DrawSource(draw))
