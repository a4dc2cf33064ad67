"""Helpers for the HTTP API tests: an access config with one known key per default role, an
app over given settings, and a way to project what was published."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from interaction_store.api import create_app
from interaction_store.api.access import DEFAULT_ROLES, AccessConfig, hash_key
from interaction_store.api.app import Role
from interaction_store.api.services import Services
from interaction_store.log import open_log
from interaction_store.projection import ProjectionRunner
from interaction_store.projection.registry import ViewRegistry, build
from interaction_store.settings import Settings
from interaction_store.views import open_store

ROLES = ("admin", "marketing", "sales", "service", "publisher", "privacy")
KEYS = {role: f"test-key-for-{role}" for role in ROLES}


def access_toml() -> str:
    """The default roles, and a key named after each role holding that role."""
    keys = "".join(
        f'\n[keys.{role}]\nrole = "{role}"\nsha256 = "{hash_key(key)}"\n'
        for role, key in KEYS.items()
    )
    return DEFAULT_ROLES + keys


def access_config() -> AccessConfig:
    return AccessConfig.from_toml(access_toml(), "(test access)")


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@contextmanager
def client(settings: Settings, role: Role = "all") -> Iterator[TestClient]:
    """A test client of the app for ``settings`` (its services closed afterwards)."""
    services = Services(settings, access_config())
    try:
        with TestClient(create_app(settings, services, role=role)) as test_client:
            yield test_client
    finally:
        services.close()


def project(settings: Settings) -> int:
    """Apply everything in the log to the default live views (what `istore run --once` does,
    without publishing the outbox); return how many events were applied."""
    with open_log(settings) as log, open_store(settings) as store:
        infos = ViewRegistry(store).ensure_defaults(settings)
        runner = ProjectionRunner(log, store, [build(i, settings) for i in infos])
        return runner.run(follow=False).applied
