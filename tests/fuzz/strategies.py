"""Hypothesis strategies for any protobuf message, built from its descriptor alone.

`messages(descriptor)` draws a message of that type: every scalar type at its edges (NaN, the
infinities, the largest and smallest ints of each width), odd and very long strings, bytes, enums with
numbers nobody defined, repeated fields, maps, nested messages, one field or none of each oneof, and
google.protobuf.Timestamp values that are not valid times. `words` mixes strings the server knows
(a feature name, a username) into every string field, and `seeds` are real requests whose fields are
swapped for drawn ones, so some examples get past validation into the code behind it.
`undecodable(descriptor)` draws bytes that are not that message: truncated, wrong wire types, and
strings that are not UTF-8. Nothing here knows about fruitstack, so a new message is covered as is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, TypeAlias, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

# A request as it goes on the wire: a message, or bytes sent exactly as they are.
Payload: TypeAlias = Message | bytes

F = FieldDescriptor
TIMESTAMP = "google.protobuf.Timestamp"
# Messages nested deeper than this are left unset: deeper than any request type goes (two levels,
# GetDriftReportRequest.time_range.start), and a bound for recursive types such as Struct.
MAX_DEPTH = 3
MAX_REPEATED = 5

_INT_RANGES: dict[int, tuple[int, int]] = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38
_EDGE_DOUBLES = [0.0, math.nan, math.inf, -math.inf, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, -1e308]
_EDGE_DOUBLES += [1e-300, 2.0**53 + 1, -(2.0**63)]
_EDGE_FLOATS = [0.0, math.nan, math.inf, -math.inf, -0.0, FLOAT32_MAX, -FLOAT32_MAX, 1.401298464324817e-45]
# Strings that have broken servers: empty and blank, NUL and control characters, bidi overrides and
# BOMs, combining marks and case changes that alter the length, astral characters, MongoDB operators,
# paths and format directives, and lengths just past the limits the backend documents (64, 200, 1024).
_ODD_STRINGS = [
    "",
    " ",
    " \t\n ",
    "\x00",
    "a\x00b",
    "\x1b[31mred",
    "\u202eevil",
    "\ufeffbom",
    "e\u0301\u0301\u0301",
    "\U0001f34e",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0010ffff",
    "\u0130",
    "\ufb03",
    "$where",
    '{"$gt": ""}',
    "a.b.$c",
    "../../etc/passwd",
    "%s%n%x",
    "' OR 1=1 --",
    "NaN",
    "-1",
    "99999999999999999999",
    "a" * 65,
    "a" * 201,
    "x" * 1025,
]
# Seconds and nanos of timestamps outside what datetime can hold, or not normalised.
_EDGE_SECONDS = [0, -1, 1, -62135596800, -62135596801, 253402300799, 253402300800, -(2**63), 2**63 - 1]
_EDGE_NANOS = [0, 1, 999_999_999, 1_000_000_000, -1, -(2**31), 2**31 - 1]


def _edges(strategy: st.SearchStrategy[Any], edges: Sequence[Any]) -> st.SearchStrategy[Any]:
    # The edge values first: hypothesis tries early branches more and shrinks towards them.
    return st.one_of(st.sampled_from(edges), strategy)


def integers(field_type: int) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field_type]
    return _edges(st.integers(low, high), [0, -1 if low < 0 else 1, low, high])


def doubles() -> st.SearchStrategy[float]:
    return _edges(st.floats(), _EDGE_DOUBLES)


def floats32() -> st.SearchStrategy[float]:
    return _edges(st.floats(width=32), _EDGE_FLOATS)


def strings(words: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Any text, the odd strings above, the server's own words as they are and disguised, and long
    repetitions (cheap to draw, up to ~100 k characters)."""
    parts: list[st.SearchStrategy[str]] = [st.sampled_from(_ODD_STRINGS), st.text(max_size=40)]
    if words:
        known = st.sampled_from(list(words))
        parts.insert(1, known)
        parts.append(
            st.builds(
                lambda word, pad, upper: f"{pad}{word.upper() if upper else word}{pad}",
                known,
                st.sampled_from([" ", "\t", "\u00a0", "\u200b"]),
                st.booleans(),
            )
        )
    parts.append(
        st.builds(lambda unit, times: unit * times, st.text(min_size=1, max_size=5), st.integers(30, 20_000))
    )
    return st.one_of(parts)


def byte_strings() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda unit, times: unit * times, st.binary(min_size=1, max_size=4), st.integers(30, 50_000)
        ),
    )


def enum_numbers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    assert field.enum_type is not None
    defined = st.sampled_from([v.number for v in field.enum_type.values])
    if field.enum_type.is_closed:  # proto2 enums refuse numbers they do not define
        return defined
    return st.one_of(defined, integers(F.TYPE_INT32))


def timestamps() -> st.SearchStrategy[Message]:
    return st.builds(
        Timestamp,
        seconds=_edges(st.integers(-(2**63), 2**63 - 1), _EDGE_SECONDS),
        nanos=_edges(st.integers(-(2**31), 2**31 - 1), _EDGE_NANOS),
    )


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _single(field: FieldDescriptor, depth: int, words: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """One value of the field's type (an element, for a repeated field)."""
    kind = field.type
    if kind in _INT_RANGES:
        return integers(kind)
    if kind == F.TYPE_DOUBLE:
        return doubles()
    if kind == F.TYPE_FLOAT:
        return floats32()
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_STRING:
        return strings(words)
    if kind == F.TYPE_BYTES:
        return byte_strings()
    if kind == F.TYPE_ENUM:
        return enum_numbers(field)
    assert field.message_type is not None, f"{field.full_name}: type {kind} is not handled"
    return _messages(field.message_type, depth + 1, words)


def _value(field: FieldDescriptor, depth: int, words: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """The whole field's value: a dict for a map, a list for a repeated field, else one value."""
    if _is_map(field):
        entry = field.message_type
        assert entry is not None
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return st.dictionaries(
            _single(key, depth, words), _single(value, depth, words), max_size=MAX_REPEATED
        )
    if field.is_repeated:
        return st.lists(_single(field, depth, words), max_size=MAX_REPEATED)
    return _single(field, depth, words)


def assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    """Set field to value (as _value draws it) on message, whatever the field's kind."""
    if field.message_type is None and not field.is_repeated:
        setattr(message, field.name, value)
        return
    target = getattr(message, field.name)
    if _is_map(field):
        assert field.message_type is not None
        scalar_values = field.message_type.fields_by_name["value"].message_type is None
        for key, item in value.items():
            if scalar_values:
                target[key] = item
            else:
                target[key].CopyFrom(item)
    elif field.is_repeated:
        target.extend(value)
    else:
        target.SetInParent()  # present even when the drawn message is empty
        target.CopyFrom(value)


@functools.cache
def _messages(descriptor: Descriptor, depth: int, words: tuple[str, ...]) -> st.SearchStrategy[Message]:
    if descriptor.full_name == TIMESTAMP:
        return timestamps()
    message_class = GetMessageClass(descriptor)

    @st.composite
    def draw_message(draw: st.DrawFn) -> Message:
        message = message_class()
        # Each oneof (proto3 `optional` fields are one-field oneofs): none of its fields, or one.
        chosen = set()
        for oneof in descriptor.oneofs:
            index = draw(st.integers(-1, len(oneof.fields) - 1))
            if index >= 0:
                chosen.add(oneof.fields[index].name)
        for field in descriptor.fields:
            if field.containing_oneof is not None and field.name not in chosen:
                continue
            if field.message_type is not None:
                if depth >= MAX_DEPTH:
                    continue  # no messages (nor maps, nor lists of them) below the depth limit
                if field.containing_oneof is None and not field.is_repeated and not draw(st.booleans()):
                    continue
            assign(message, field, draw(_value(field, depth, words)))
        return message

    return draw_message()


def mutations(seed: Message, words: tuple[str, ...] = ()) -> st.SearchStrategy[Message]:
    """seed with some fields replaced by drawn values; map entries are added to the seed's, so a
    map keeps its valid keys and gets odd values (or odd keys) beside them."""
    # The stubs type a message's DESCRIPTOR as the C extension's or the Python class; both work.
    descriptor = cast(Descriptor, seed.DESCRIPTOR)

    @st.composite
    def draw_mutation(draw: st.DrawFn) -> Message:
        message = type(seed)()
        message.CopyFrom(seed)
        for field in descriptor.fields:
            if not draw(st.booleans()):  # False, the shrinker's favourite, keeps the seed's field
                continue
            value = draw(_value(field, 0, words))
            if not _is_map(field):
                message.ClearField(field.name)
            assign(message, field, value)
        return message

    return draw_mutation()


def messages(
    descriptor: Descriptor, *, words: Sequence[str] = (), seeds: Sequence[Message] = ()
) -> st.SearchStrategy[Message]:
    """Messages of the descriptor's type, drawn from scratch or (when seeds are given) by mutation."""
    drawn = _messages(descriptor, 0, tuple(words))
    if not seeds:
        return drawn
    mutated = st.sampled_from(list(seeds)).flatmap(lambda s: mutations(s, tuple(words)))
    return sometimes(mutated, drawn, one_in=2)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bad_utf8_paths(descriptor: Descriptor, depth: int = 0) -> list[bytes]:
    """For each string field of the message and of the messages (map entries included) it holds
    directly: bytes setting it to something that is not UTF-8."""
    out = []
    for field in descriptor.fields:
        if field.type == F.TYPE_STRING:
            out.append(_tag(field.number, 2) + b"\x02\xff\xfe")
        elif field.message_type is not None and depth < 1 and field.message_type.full_name != TIMESTAMP:
            for inner in _bad_utf8_paths(field.message_type, depth + 1):
                out.append(_tag(field.number, 2) + _varint(len(inner)) + inner)
    return out


def malformed(descriptor: Descriptor) -> list[bytes]:
    """Bytes no parser may accept as a `descriptor` message, each broken in its own way (strings
    that are not UTF-8 are refused only where the file is proto3, as every fruitstack file is)."""
    first = descriptor.fields[0].number if descriptor.fields else 1
    return [
        b"\xff\xff\xff\xff",
        b"\x80",  # a varint that never ends
        _tag(first, 2) + b"\x7f" + b"ab",  # a length past the end
        _tag(first, 0) + b"\xff" * 10 + b"\x02",  # an 11-byte varint
        _tag(first, 4),  # an end-group with no start
        _tag(first, 3),  # a start-group with no end
        _tag(first, 6) + b"\x00",  # wire type 6 does not exist
        *_bad_utf8_paths(descriptor),
    ]


def undecodable(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes that are not a `descriptor` message: malformed ones, alone or after a good message, and
    random bytes (which sometimes parse: then they are just another message)."""
    crafted = malformed(descriptor)
    # At the depth limit: scalar fields only, a small good prefix.
    valid = _messages(descriptor, MAX_DEPTH, ()).map(lambda m: m.SerializeToString())
    return st.one_of(
        st.sampled_from(crafted),
        st.tuples(valid, st.sampled_from(crafted)).map(b"".join),  # a good message, then garbage
        st.binary(min_size=1, max_size=64),
    )


def sometimes(
    usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], *, one_in: int
) -> st.SearchStrategy[Any]:
    """`rare` once in `one_in` draws, else `usual` (which the shrinker prefers).

    st.one_of flattens nested one_ofs into one list of branches and picks among those, so
    repeating a branch, or nesting, is no way to weight it.
    """
    return st.integers(1, one_in).flatmap(lambda n: rare if n == one_in else usual)


def payloads(
    descriptor: Descriptor, *, words: Sequence[str] = (), seeds: Sequence[Message] = ()
) -> st.SearchStrategy[Payload]:
    """Mostly messages, one in five undecodable bytes."""
    message = messages(descriptor, words=words, seeds=seeds)
    return sometimes(message, undecodable(descriptor), one_in=5)


def requests(
    method: MethodDescriptor, *, words: Sequence[str] = (), seeds: Sequence[Message] = ()
) -> st.SearchStrategy[Payload | list[Payload]]:
    """What a call of `method` sends: one payload, or for a client-streaming method a short stream
    of them (empty included)."""
    one = payloads(method.input_type, words=words, seeds=seeds)
    if method.client_streaming:
        return st.lists(one, max_size=4)
    return one
