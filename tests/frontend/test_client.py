"""frontend.client against a real backend (in process, port 0) over a real channel and real nx-27017."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.auth.roles import Role
from frontend.client import Credentials, FruitstackClient, Health
from frontend.exceptions import (
    BackendUnreachable,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    NotSignedIn,
    PermissionDenied,
    Unavailable,
)
from scripts.certs import make_certificates
from scripts.processes import free_port
from tests.fixtures.backend import TEST_ADMIN, RunningBackend, backend_settings, mint_token, running_backend
from tests.fixtures.model_service import ModelService


def signed_in(role: Role) -> Credentials:
    credentials = Credentials()
    credentials.token = mint_token(role)
    return credentials


@pytest.fixture
async def shared_client(backend: RunningBackend) -> AsyncIterator[FruitstackClient]:
    """The client the app shares between sessions (no token of its own)."""
    client = FruitstackClient(backend.target, timeout_s=5)
    yield client
    await client.close()


@pytest.fixture
def client(shared_client: FruitstackClient) -> FruitstackClient:
    """A session signed in as an editor."""
    return shared_client.for_session(signed_in(Role.EDITOR))


async def test_fruits_round_trip(client: FruitstackClient) -> None:
    apple = await client.add_fruit(name="  apple ")
    await client.add_fruit(name="pear")
    await client.add_fruit(name="apple")
    assert apple.name == "apple"
    assert apple.created_at is not None

    page = await client.list_fruits(page_size=2)
    assert [f.name for f in page.fruits] == ["apple", "pear"]  # newest first
    assert page.total_size == 3
    rest = await client.list_fruits(page_size=2, page_token=page.next_page_token)
    assert [f.id for f in rest.fruits] == [apple.id]
    assert rest.next_page_token == ""

    summary = await client.summarize_fruits()
    assert [(c.name, c.count) for c in summary.counts] == [("apple", 2), ("pear", 1)]
    assert summary.total == 3

    await client.delete_fruit(fruit_id=apple.id)
    with pytest.raises(NotFound):
        await client.delete_fruit(fruit_id=apple.id)


async def test_invalid_name_raises_with_the_backends_message(client: FruitstackClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await client.add_fruit(name="   ")
    assert "empty" in caught.value.message
    assert caught.value.code == "INVALID_ARGUMENT"
    assert not isinstance(caught.value, Unavailable)


async def test_prediction_without_model_service_is_unavailable_not_unreachable(
    client: FruitstackClient,
) -> None:
    # The `backend` fixture points at a model service port nobody listens on.
    with pytest.raises(Unavailable) as caught:
        await client.get_model()
    assert not isinstance(caught.value, BackendUnreachable)
    assert isinstance(caught.value, Unavailable)
    health = await client.health()
    assert health == Health(backend=True, fruit_store=True, model_service=False)


async def test_unreachable_backend() -> None:
    client = FruitstackClient(f"127.0.0.1:{free_port()}", timeout_s=2)
    try:
        with pytest.raises(BackendUnreachable, match="cannot be reached"):
            await client.list_fruits(page_size=5)
        assert await client.health() == Health(backend=False, fruit_store=None, model_service=None)
    finally:
        await client.close()


async def test_a_refused_model_is_a_failed_precondition_not_an_outage(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    # A new champion whose artifact then changes in the registry: UpdateModel must refuse it.
    tampered = await asyncio.to_thread(private_model_service.train, seed=11)
    private_model_service.corrupt(tampered)
    client = FruitstackClient(backend_with_private_model.target, timeout_s=30).for_session(
        signed_in(Role.ADMIN)
    )
    try:
        with pytest.raises(FailedPrecondition) as caught:
            await client.update_model()
        assert not isinstance(caught.value, Unavailable)
        assert caught.value.code == "FAILED_PRECONDITION"
        assert "refusing to load" in caught.value.message
    finally:
        await client.close()


async def test_each_session_sends_its_own_token_and_no_other(shared_client: FruitstackClient) -> None:
    first, second = Credentials(), Credentials()
    one, other = shared_client.for_session(first), shared_client.for_session(second)

    with pytest.raises(NotSignedIn, match="needs a signed-in user"):
        await one.list_fruits(page_size=5)
    assert first.rejections == 0  # no token was sent, so none was refused
    signed = await one.login(username=TEST_ADMIN[0], password=TEST_ADMIN[1])
    assert (signed.username, signed.role) == ("admin", "admin")
    assert signed.expires_at is not None
    first.token = signed.token
    await one.add_fruit(name="fig")

    # One session's sign-in never reaches another's calls, though they share the channel.
    with pytest.raises(NotSignedIn):
        await other.add_fruit(name="fig")
    assert (await one.summarize_fruits()).total == 1


async def test_a_too_weak_role_is_permission_denied(shared_client: FruitstackClient) -> None:
    viewer = shared_client.for_session(signed_in(Role.VIEWER))
    await viewer.list_fruits(page_size=5)
    with pytest.raises(
        PermissionDenied, match="needs role editor or admin; user 'test-viewer' has role viewer"
    ):
        await viewer.add_fruit(name="x")


async def test_a_refused_token_is_counted_for_the_session(shared_client: FruitstackClient) -> None:
    credentials = Credentials()
    credentials.token = "expired-or-forged"
    with pytest.raises(NotSignedIn, match="the access token is not valid"):
        await shared_client.for_session(credentials).list_fruits(page_size=5)
    assert credentials.rejections == 1
    assert credentials.last_rejection.startswith("the access token is not valid")


async def test_a_wrong_password_is_not_signed_in(shared_client: FruitstackClient) -> None:
    with pytest.raises(NotSignedIn, match="wrong username or password"):
        await shared_client.login(username="admin", password="wrong-password")


async def test_the_client_speaks_tls_with_a_ca_file(
    mongodb_uri: str, mongodb_database: str, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path)
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database).model_copy(
        update={"tls_cert_file": certs.cert, "tls_key_file": certs.key, "tls_ca_file": certs.ca}
    )
    async with running_backend(settings) as backend:
        client = FruitstackClient(backend.target, timeout_s=5, ca_file=certs.ca)
        plaintext = FruitstackClient(backend.target, timeout_s=2)
        try:
            signed = await client.login(username=TEST_ADMIN[0], password=TEST_ADMIN[1])
            credentials = Credentials()
            credentials.token = signed.token
            assert (await client.for_session(credentials).add_fruit(name="yuzu")).name == "yuzu"
            with pytest.raises(Unavailable):
                await plaintext.list_fruits(page_size=1)
        finally:
            await client.close()
            await plaintext.close()


async def test_a_refusal_counts_only_for_the_token_the_call_carried(shared_client: FruitstackClient) -> None:
    """A call sent before signing in, refused after it, must not end the new sign-in."""
    credentials = Credentials()
    session = shared_client.for_session(credentials)
    sent_anonymously = asyncio.create_task(session.list_fruits(page_size=5))
    await asyncio.sleep(0)  # the task has read the (absent) token and sent its call
    credentials.token = mint_token(Role.VIEWER)

    with pytest.raises(NotSignedIn):
        await sent_anonymously
    assert credentials.rejections == 0
    await session.list_fruits(page_size=5)  # the new token works


async def test_an_admin_manages_users_and_a_user_changes_their_password(
    backend: RunningBackend, shared_client: FruitstackClient
) -> None:
    admin = shared_client.for_session(signed_in(Role.ADMIN))
    created = await admin.create_user(username="Hana", password="hana-password-1", role="viewer")
    assert (created.username, created.role, created.disabled) == ("hana", "viewer", False)
    assert (await admin.set_user_role(username="hana", role="editor")).role == "editor"
    assert (await admin.set_user_disabled(username="hana", disabled=True)).disabled
    assert [u.disabled for u in await admin.list_users() if u.username == "hana"] == [True]
    assert not (await admin.set_user_disabled(username="hana", disabled=False)).disabled
    await admin.reset_password(username="hana", new_password="hana-password-2")

    # Hana signs in and changes her own password; her session goes on with the new token.
    credentials = Credentials()
    hana = shared_client.for_session(credentials)
    credentials.token = (await hana.login(username="hana", password="hana-password-2")).token
    old_token = credentials.token
    with pytest.raises(NotSignedIn, match="the current password is wrong"):
        await hana.change_password(old_password="not-hers-at-all", new_password="hana-password-3")
    credentials.token = await hana.change_password(
        old_password="hana-password-2", new_password="hana-password-3"
    )
    assert credentials.token != old_token
    await hana.list_fruits(page_size=1)
    with pytest.raises(PermissionDenied, match="user 'hana' has role editor"):
        await hana.list_users()

    await admin.delete_user(username="hana")
    with pytest.raises(NotSignedIn, match="user 'hana' no longer exists"):
        await hana.list_fruits(page_size=1)
    with pytest.raises(FailedPrecondition, match="'admin' is the last admin"):
        await admin.delete_user(username=TEST_ADMIN[0])
