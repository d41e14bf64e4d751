"""TLS on the backend's port with a certificate from `nox -s certs` (scripts/certs.py): grpcurl with
-cacert, the container probe, and refusals of plaintext and of an untrusted certificate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fruitstack.v1 import fruits_pb2

from backend.container_probe import check
from scripts.certs import CertFiles, make_certificates
from tests.fixtures.backend import TEST_ADMIN, RunningBackend, backend_settings, running_backend
from tests.support import run_grpcurl


@pytest.fixture
def certs(tmp_path: Path) -> CertFiles:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
async def tls_backend(
    certs: CertFiles, mongodb_uri: str, mongodb_database: str
) -> AsyncIterator[RunningBackend]:
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database).model_copy(
        update={"tls_cert_file": certs.cert, "tls_key_file": certs.key, "tls_ca_file": certs.ca}
    )
    async with running_backend(settings) as backend:
        yield backend


async def test_grpcurl_with_cacert_signs_in_and_adds_a_fruit_over_tls(
    tls_backend: RunningBackend, certs: CertFiles
) -> None:
    tls = ["-cacert", str(certs.ca)]
    code, out, err = await run_grpcurl(*tls, tls_backend.target, "list")
    assert code == 0, err
    assert "fruitstack.v1.AuthService" in out.split()

    login = json.dumps({"username": TEST_ADMIN[0], "password": TEST_ADMIN[1]})
    code, out, err = await run_grpcurl(
        *tls, "-d", login, tls_backend.target, "fruitstack.v1.AuthService/Login"
    )
    assert code == 0, err
    token = json.loads(out)["access_token"]  # grpcurl keeps the proto field names
    code, out, err = await run_grpcurl(
        *tls, "-H", f"authorization: Bearer {token}", "-d", '{"name": "kumquat"}',
        tls_backend.target, "fruitstack.v1.FruitService/AddFruit",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["fruit"]["name"] == "kumquat"
    # The fixture's own channel trusts the same CA.
    listed = await tls_backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=10)
    assert [f.name for f in listed.fruits] == ["kumquat"]


async def test_plaintext_and_untrusted_clients_are_refused(
    tls_backend: RunningBackend, tmp_path: Path
) -> None:
    code, _, err = await run_grpcurl("-plaintext", "-max-time", "5", tls_backend.target, "list")
    assert code != 0, "a plaintext client reached the TLS port"
    other_ca = make_certificates(tmp_path / "other").ca
    code, _, err = await run_grpcurl("-cacert", str(other_ca), "-max-time", "5", tls_backend.target, "list")
    assert code != 0
    assert "certificate" in err


async def test_the_container_probe_checks_health_over_tls(
    tls_backend: RunningBackend, certs: CertFiles
) -> None:
    assert await asyncio.to_thread(check, tls_backend.target, ca_file=certs.ca) == "SERVING"
    assert (await asyncio.to_thread(check, tls_backend.target, timeout_s=2)).startswith("UNAVAILABLE")
