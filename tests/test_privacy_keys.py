"""The data-key store: one contract, run against SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from pathlib import Path

import pytest
from pydantic import SecretStr

from interaction_store.privacy import (
    KeyStore,
    KeyStoreError,
    MasterKey,
    MasterKeyError,
    SubjectErased,
    open_key_store,
)
from interaction_store.privacy.cipher import NONCE_BYTES, TAG_BYTES
from interaction_store.privacy.keystore import CHECK_LABEL
from interaction_store.privacy.sqlite import KEYS_FILE, SQLiteKeyStore
from interaction_store.settings import Settings

OpenStore = Callable[..., KeyStore]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def master(name: str = "ISTORE_MASTER_KEY") -> MasterKey:
    return MasterKey(secrets.token_bytes(32), name)


class KeyStoreContract:
    """What every key store backend does. Subclasses give ``settings``."""

    @pytest.fixture
    def settings(self) -> Settings:
        raise NotImplementedError

    @pytest.fixture
    def kek(self) -> MasterKey:
        return master()

    @pytest.fixture
    def open_store(self, settings: Settings, kek: MasterKey) -> Iterator[OpenStore]:
        """Opens stores on the same database (each a process's view of it); closes them."""
        opened: list[KeyStore] = []

        def open_one(key: MasterKey | None = None, **overrides: object) -> KeyStore:
            store = open_key_store(settings.model_copy(update=overrides), key or kek)
            opened.append(store)
            return store

        yield open_one
        for store in opened:
            store.close()

    def test_a_key_is_made_once_and_found_again(self, open_store: OpenStore) -> None:
        store = open_store()
        assert store.get("c1") is None
        key = store.get_or_create("c1")
        assert len(key) == 32
        assert store.get_or_create("c1") == key
        assert store.get("c1") == key
        assert open_store().get("c1") == key  # another process, no cache
        assert store.get_or_create("c2") != key
        assert store.destroyed("c1") is None

    def test_many_subjects_at_once(self, open_store: OpenStore) -> None:
        store = open_store()
        first = store.get_or_create("a")
        found = store.get_or_create_many(s for s in ["a", "b", "b", "c"])  # any iterable
        assert found.keys["a"] == first
        assert sorted(found.keys) == ["a", "b", "c"]
        assert not found.erased
        fresh = open_store().get_many(["a", "b", "c", "nobody"])
        assert fresh.keys == found.keys
        assert "nobody" not in fresh.keys and "nobody" not in fresh.erased

    def test_keys_are_stored_wrapped(self, open_store: OpenStore) -> None:
        store = open_store()
        key = store.get_or_create("c1")
        wrapped = store._fetch(["c1"])["c1"].wrapped
        assert wrapped is not None and key not in wrapped
        assert len(wrapped) == NONCE_BYTES + 32 + TAG_BYTES

    def test_destroy_leaves_a_tombstone(self, open_store: OpenStore) -> None:
        store = open_store()
        store.get_or_create("c1")
        other = open_store()
        assert other.destroy("c1") is True
        when = other.destroyed("c1")
        assert when is not None and when.tzinfo is not None
        fresh = open_store()
        assert fresh.get("c1") is None
        assert fresh.destroyed("c1") == when
        assert fresh.get_or_create_many(["c1", "c2"]).erased == {"c1": when}
        with pytest.raises(SubjectErased) as erased:
            fresh.get_or_create("c1")
        assert erased.value.destroyed_at == when and "c1" in str(erased.value)
        row = fresh._fetch(["c1"])["c1"]
        assert row.wrapped is None and row.destroyed_at == when
        assert fresh.destroy("c1") is False  # once erased, the first time stands
        assert fresh.destroyed("c1") == when

    def test_erasing_a_subject_that_had_no_key(self, open_store: OpenStore) -> None:
        store = open_store()
        assert store.destroy("never-seen") is False
        assert open_store().destroyed("never-seen") is not None
        with pytest.raises(SubjectErased):
            open_store().get_or_create("never-seen")

    def test_concurrent_creation_ends_with_one_key(self, open_store: OpenStore) -> None:
        subjects = [f"s{i}" for i in range(300)]
        stores = [open_store(), open_store()]
        start = threading.Barrier(len(stores))
        results: list[dict[str, bytes]] = [{} for _ in stores]

        def create(i: int) -> None:
            start.wait()
            results[i] = stores[i].get_or_create_many(subjects).keys

        threads = [threading.Thread(target=create, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results[0] == results[1]
        assert len(results[0]) == len(subjects)
        assert open_store().get_many(subjects).keys == results[0]

    def test_another_master_key_is_refused(self, open_store: OpenStore) -> None:
        open_store().get_or_create("c1")
        with pytest.raises(MasterKeyError) as refused:
            open_store(master("ISTORE_MASTER_KEY_FILE=/etc/istore/master.key"))
        message = str(refused.value)
        assert "ISTORE_MASTER_KEY_FILE=/etc/istore/master.key" in message
        assert "does not open the key store" in message

    def test_a_key_moved_to_another_subject_does_not_open(self, open_store: OpenStore) -> None:
        store = open_store()
        store.get_or_create("c1")
        wrapped = store._fetch(["c1"])["c1"].wrapped
        assert wrapped is not None
        store._insert([("c2", wrapped)])
        with pytest.raises(KeyStoreError, match="'c2' does not open"):
            open_store().get("c2")

    def test_a_destroy_elsewhere_is_seen_within_the_cache_bound(
        self, open_store: OpenStore
    ) -> None:
        clock = FakeClock()
        reader = open_store(key_cache_seconds=30.0)
        reader._clock = clock
        key = reader.get_or_create("c1")
        open_store().destroy("c1")
        clock.now += 29.0
        assert reader.get("c1") == key  # still within the documented bound
        clock.now += 2.0
        assert reader.get("c1") is None
        assert reader.destroyed("c1") is not None

    def test_a_destroy_here_is_seen_here_at_once(self, open_store: OpenStore) -> None:
        store = open_store(key_cache_seconds=3600.0)
        store.get_or_create("c1")
        store.destroy("c1")
        assert store.get("c1") is None

    def test_without_cache_every_lookup_reads_the_store(self, open_store: OpenStore) -> None:
        reader = open_store(key_cache_seconds=0.0)
        reader.get_or_create("c1")
        open_store().destroy("c1")
        assert reader.get("c1") is None

    def test_the_cache_is_bounded(self, open_store: OpenStore) -> None:
        store = open_store(key_cache_size=3)
        keys = store.get_or_create_many([f"s{i}" for i in range(10)]).keys
        assert len(store._cache) == 3
        assert store.get("s0") == keys["s0"]  # evicted, read again

    def test_the_check_value_is_sealed(self, open_store: OpenStore) -> None:
        store = open_store()
        stored = store._check_value(b"ignored: one is stored already")
        assert CHECK_LABEL not in stored


class TestSQLiteKeyStore(KeyStoreContract):
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return Settings(backend="embedded", data_dir=tmp_path / "data")

    def test_the_file_is_private(self, open_store: OpenStore, settings: Settings) -> None:
        store = open_store()
        assert isinstance(store, SQLiteKeyStore)
        store.get_or_create("c1")
        path = settings.data_dir / KEYS_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
        for companion in path.parent.glob(f"{KEYS_FILE}-*"):
            assert stat.S_IMODE(companion.stat().st_mode) == 0o600

    def test_a_destroyed_key_leaves_no_bytes_in_the_files(
        self, open_store: OpenStore, settings: Settings
    ) -> None:
        store = open_store()
        store.get_or_create_many([f"s{i}" for i in range(50)])
        wrapped = store._fetch(["s7"])["s7"].wrapped
        assert wrapped is not None
        path = settings.data_dir / KEYS_FILE

        def on_disk() -> bytes:
            return b"".join(p.read_bytes() for p in path.parent.glob(f"{KEYS_FILE}*"))

        assert wrapped in on_disk()
        store.destroy("s7")
        assert wrapped not in on_disk()


def _create_in_a_process(
    settings: Settings, subjects: list[str], out: Queue[dict[str, str]]
) -> None:
    # The master key from the settings: the processes race to make the file as well.
    with open_key_store(settings) as store:
        out.put({s: k.hex() for s, k in store.get_or_create_many(subjects).keys.items()})


def test_processes_opening_a_fresh_store_together_end_with_one_key_each(tmp_path: Path) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path / "data")
    subjects = [f"s{i}" for i in range(200)]
    context = multiprocessing.get_context("fork")
    out: Queue[dict[str, str]] = context.Queue()
    processes = [
        context.Process(target=_create_in_a_process, args=(settings, subjects, out))
        for _ in range(3)
    ]
    for p in processes:
        p.start()
    results = [out.get(timeout=60) for _ in processes]
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == len(subjects)


class TestPostgresKeyStore(KeyStoreContract):
    @pytest.fixture
    def settings(self, tmp_path: Path, postgres_admin: str) -> Iterator[Settings]:
        from tests.postgres_server import fresh_database

        with fresh_database(postgres_admin) as dsn:
            yield Settings(
                backend="embedded", data_dir=tmp_path / "data", postgres_dsn=SecretStr(dsn)
            )
