"""API keys and roles: the access file, the `istore keys` commands, and authentication over
HTTP (401 for a missing or unknown key, either header works)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from interaction_store.api.access import (
    CATEGORIES,
    DEFAULT_ROLES,
    AccessConfig,
    AccessError,
    add_key,
    hash_key,
    revoke_key,
)
from interaction_store.cli import main
from tests.api_support import KEYS, access_config


def test_default_roles_follow_the_read_permissions() -> None:
    config = AccessConfig.from_toml(DEFAULT_ROLES)
    assert config.roles["admin"].read == frozenset(CATEGORIES)
    assert config.roles["admin"].publish
    marketing = config.roles["marketing"]
    assert marketing.read == {
        "marketing_email",
        "sms",
        "push_notification",
        "website",
        "marketing_form",
        "event",
    }
    assert not marketing.publish
    assert config.roles["publisher"].read == frozenset()
    assert config.roles["publisher"].publish
    assert config.keys == {}


def test_a_key_authenticates_as_its_role_and_nothing_else_does() -> None:
    config = access_config()
    principal = config.authenticate(KEYS["sales"])
    assert principal is not None
    assert (principal.key_name, principal.role.name) == ("sales", "sales")
    assert config.authenticate("test-key-for-nobody") is None
    assert config.authenticate("") is None
    assert config.authenticate(None) is None
    # The hash, not the key, is what the file holds.
    assert config.authenticate(hash_key(KEYS["sales"])) is None


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ('[roles.x]\nread = ["emails"]\n', ["roles.x.read", "'emails'", "marketing_email"]),
        ('[roles.x]\nread = "sms"\n', ["roles.x.read", "'sms'", "list"]),
        ("[roles.x]\npublish = 1\n", ["roles.x.publish", "1", "true or false"]),
        ("[roles.x]\nwrite = true\n", ["roles.x", "'write'"]),
        ('[keys.k]\nrole = "ghost"\nsha256 = "' + "a" * 64 + '"\n', ["keys.k.role", "'ghost'"]),
        ('[roles.x]\n[keys.k]\nrole = "x"\nsha256 = "xyz"\n', ["keys.k.sha256", "'xyz'", "64"]),
        ("[users]\n", ["'users'"]),
        ("[roles.x\n", ["not valid TOML"]),
    ],
)
def test_a_broken_access_file_names_the_entry_and_value(toml: str, names: list[str]) -> None:
    with pytest.raises(AccessError) as caught:
        AccessConfig.from_toml(toml, "access.toml")
    message = str(caught.value)
    assert message.startswith("access.toml")
    for name in names:
        assert name in message


def test_add_and_revoke_keys_keep_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    key = add_key(path, "dashboard", "marketing")
    other = add_key(path, "crm-sync", "publisher")
    assert key != other
    text = path.read_text()
    assert key not in text and other not in text
    assert hash_key(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = AccessConfig.load(path)
    found = config.authenticate(key)
    assert found is not None and found.role.name == "marketing"
    with pytest.raises(AccessError, match="'dashboard' already"):
        add_key(path, "dashboard", "sales")
    with pytest.raises(AccessError, match="role 'owner' is not in"):
        add_key(path, "x", "owner")
    with pytest.raises(AccessError, match="'bad name!'"):
        add_key(path, "bad name!", "sales")

    revoke_key(path, "dashboard")
    config = AccessConfig.load(path)
    assert config.authenticate(key) is None
    kept = config.authenticate(other)
    assert kept is not None and kept.key_name == "crm-sync"
    assert set(config.roles) == set(AccessConfig.from_toml(DEFAULT_ROLES).roles)
    with pytest.raises(AccessError, match="no key named 'dashboard'"):
        revoke_key(path, "dashboard")


def test_keys_commands(tmp_path: Path) -> None:
    access = tmp_path / "access.toml"
    env = {"ISTORE_ACCESS_FILE": str(access), "ISTORE_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "ops", "--role", "admin"], env=env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("istore_")
    found = AccessConfig.load(access).authenticate(key)
    assert found is not None and found.role.name == "admin"

    listed = runner.invoke(main, ["keys", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "ops: admin" in listed.stdout
    assert key not in listed.stdout

    bad = runner.invoke(main, ["keys", "create", "x", "--role", "owner"], env=env)
    assert bad.exit_code != 0
    assert "role 'owner'" in bad.output

    revoked = runner.invoke(main, ["keys", "revoke", "ops"], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert AccessConfig.load(access).authenticate(key) is None

    missing = runner.invoke(
        main, ["keys", "list"], env={**env, "ISTORE_ACCESS_FILE": str(tmp_path / "none.toml")}
    )
    assert missing.exit_code != 0
    assert "istore keys create" in missing.output
