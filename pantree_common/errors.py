"""Domain errors and their one mapping to gRPC status codes (with google.rpc details)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


class PantreeError(Exception):
    """Base of every error a Pantree core raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=self.message)


class ConfigError(PantreeError):
    """A setting has a value the program cannot run with."""

    code = grpc.StatusCode.FAILED_PRECONDITION


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (for example `history.quantities[3]`) and why."""

    field: str
    description: str


class InvalidArgument(PantreeError):
    """The request is malformed; carries one violation per bad field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one violation")
        self.violations = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations[:5])
        more = len(self.violations) - 5
        super().__init__(summary + (f" (and {more} more)" if more > 0 else ""))

    @classmethod
    def single(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])

    def to_status(self) -> status_pb2.Status:
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(detail)
        return status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message=self.message, details=[packed]
        )


class FailedPrecondition(PantreeError):
    """The system is not in a state to serve the request (for example an empty store)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DeadlineExceeded(PantreeError):
    """The caller's deadline has passed: its work is not started, or its late result not sent."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unavailable(PantreeError):
    """A dependency cannot be reached; retrying later may succeed."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(PantreeError):
    """The call carries no credential, or one that is malformed or unknown."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PantreeError):
    """The caller is known but its scopes do not cover what it asked for."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Collector:
    """Gathers field violations so a request reports every bad field at once."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        if not ok:
            self.add(field, description)
        return ok

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)


def bad_request_violations(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[FieldViolation]:
    """Read the BadRequest field violations out of a received error, if it carries any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return found


_NOT_THE_CALLERS = frozenset(
    {grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
)


class UpstreamError(PantreeError):
    """A call to another Pantree service failed; keeps that service's status and details."""

    def __init__(
        self,
        step: str,
        code: grpc.StatusCode,
        details: str,
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        # An upstream UNKNOWN is our bug somewhere else, and a step refusing this service's own
        # credentials is its misconfiguration, not the caller's: INTERNAL, never UNKNOWN, and
        # never UNAUTHENTICATED or PERMISSION_DENIED for a caller whose credentials were fine.
        self.code = grpc.StatusCode.INTERNAL if code in _NOT_THE_CALLERS else code
        self.step = step
        self.violations = tuple(violations)
        super().__init__(f"{step} step failed ({code.name}): {details}")

    @classmethod
    def from_rpc_error(cls, step: str, error: grpc.aio.AioRpcError) -> UpstreamError:
        return cls(step, error.code(), error.details() or "", bad_request_violations(error))

    def to_status(self) -> status_pb2.Status:
        if self.code == grpc.StatusCode.INVALID_ARGUMENT and self.violations:
            status = InvalidArgument(self.violations).to_status()
            status.message = self.message
            return status
        return status_pb2.Status(code=self.code.value[0], message=self.message)
