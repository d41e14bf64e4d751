"""Unit tests of the exception-to-status mapping (the servicer tests cover it over the wire)."""

from __future__ import annotations

import grpc
import pytest

from backend import exceptions
from backend.interceptors import status_code_for


class _SubclassOfNotFound(exceptions.NotFound):
    pass


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (exceptions.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (exceptions.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (exceptions.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (exceptions.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (exceptions.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (exceptions.Unimplemented("x"), grpc.StatusCode.UNIMPLEMENTED),
        (_SubclassOfNotFound("x"), grpc.StatusCode.NOT_FOUND),
        (exceptions.FruitstackError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_exception_has_its_status(exc: exceptions.FruitstackError, code: grpc.StatusCode) -> None:
    assert status_code_for(exc) == code
