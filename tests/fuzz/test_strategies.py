"""The descriptor-driven strategies without a server: every kind of field is drawn, every drawn
message survives the wire, the edges are reached and the malformed bytes are refused."""

from __future__ import annotations

import math
from typing import cast

import pytest
from fruitstack.v1 import auth_pb2, monitoring_pb2, predictions_pb2
from google.protobuf import descriptor_pb2, proto_builder, struct_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.descriptor_pb2 import FieldDescriptorProto
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, Phase, find, given, settings

from tests.fuzz.strategies import malformed, messages, mutations
from tests.fuzz.test_fuzz_rpcs import METHODS

# One field of each scalar type (proto_builder makes the message type at run time).
ALL_SCALARS = proto_builder.MakeSimpleProtoClass(
    {
        f"f_{name.removeprefix('TYPE_').lower()}": number
        for name, number in FieldDescriptorProto.Type.items()
        if name not in ("TYPE_GROUP", "TYPE_MESSAGE", "TYPE_ENUM")
    },
    full_name="fruitstack.fuzz.test.AllScalars",
)
# The stubs type a built class's DESCRIPTOR as the C extension's or the Python class; both work.
ALL_SCALARS_TYPE = cast(Descriptor, ALL_SCALARS.DESCRIPTOR)
# Every request type, plus a recursive message with a oneof and a map (Value), and proto2 with closed
# enums, presence and a nested message (FieldDescriptorProto).
DESCRIPTORS: list[Descriptor] = [
    *(m.input_type for m in METHODS),
    ALL_SCALARS_TYPE,
    struct_pb2.Value.DESCRIPTOR,
    descriptor_pb2.FieldDescriptorProto.DESCRIPTOR,
]
QUICK = settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: d.full_name)
def test_every_drawn_message_round_trips_through_the_wire(descriptor: Descriptor) -> None:
    @QUICK
    @given(messages(descriptor))
    def round_trip(message: Message) -> None:
        assert message.DESCRIPTOR.full_name == descriptor.full_name
        wire = message.SerializeToString(deterministic=True)
        # Compared as bytes: NaN is not equal to itself.
        assert type(message).FromString(wire).SerializeToString(deterministic=True) == wire

    round_trip()


# find() describes what it found, and a found 100 kB string makes a long description.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_the_edges_are_reached() -> None:
    # Found, not shrunk: shrinking a 1000-character string is most of the time otherwise.
    quick = settings(database=None, max_examples=500, phases=[Phase.generate])
    scalars = messages(ALL_SCALARS_TYPE)
    find(scalars, lambda m: math.isnan(m.f_double), settings=quick)
    find(scalars, lambda m: m.f_uint64 == 2**64 - 1, settings=quick)
    find(scalars, lambda m: len(m.f_string) > 1000, settings=quick)
    role = messages(auth_pb2.CreateUserRequest.DESCRIPTOR)
    find(role, lambda m: m.role not in auth_pb2.Role.values(), settings=quick)
    drift = messages(monitoring_pb2.GetDriftReportRequest.DESCRIPTOR)
    find(drift, lambda m: m.time_range.end.nanos >= 10**9, settings=quick)
    find(drift, lambda m: m.WhichOneof("window") is None, settings=quick)


def test_a_mutation_keeps_a_map_s_entries_and_adds_odd_ones() -> None:
    seed = predictions_pb2.PredictRequest(features={"a": 1.0, "b": 2.0})
    found = find(
        mutations(seed),
        lambda m: len(m.features) > 2,
        settings=settings(database=None, max_examples=500, phases=[Phase.generate]),
    )
    assert isinstance(found, predictions_pb2.PredictRequest)
    # A drawn key may replace a seed's value, never remove its key.
    assert {"a", "b"} < set(found.features)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_malformed_payload_is_refused_by_the_parser(method: MethodDescriptor) -> None:
    descriptor = method.input_type
    message_class = GetMessageClass(descriptor)
    for payload in malformed(descriptor):
        with pytest.raises(DecodeError):
            message_class.FromString(payload)
