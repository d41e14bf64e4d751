"""Container health probe: `python -m backend.container_probe` exits 0 when the backend reports SERVING.

Docker's HEALTHCHECK runs it inside the backend image, which has no grpc_health_probe binary; it asks
the server's own grpc.health.v1 service, so "healthy" means exactly what the server says about itself
(the overall status "" by default, or one named service).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from backend.config import Settings


def _channel(target: str, ca_file: Path | None) -> grpc.Channel:
    if ca_file is None:
        return grpc.insecure_channel(target)
    # The certificate names localhost and 127.0.0.1 (`nox -s certs`), so the probe's address matches it.
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes()))


def check(target: str, *, service: str = "", timeout_s: float = 3.0, ca_file: Path | None = None) -> str:
    """The health status name of `service` at `target` (e.g. "SERVING"), or why it could not be read.

    With ca_file the call goes over TLS, trusting that CA.
    """
    with _channel(target, ca_file) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--service", default="", help='health service name ("" = the whole server)')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    # The same settings object the server is built from, so the probe follows GRPC_PORT.
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"backend.container_probe: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if settings.tls and settings.tls_ca_file is None:
        print(
            "backend.container_probe: TLS is on; set TLS_CA_FILE so the probe can trust it", file=sys.stderr
        )
        return 2
    status = check(
        f"127.0.0.1:{settings.grpc_port}",
        service=args.service,
        timeout_s=args.timeout,
        ca_file=settings.tls_ca_file if settings.tls else None,
    )
    print(f"health({args.service!r}) = {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
