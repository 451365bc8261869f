"""provider.nonces: Decimal comparison, malformed nonces, atomic consumption."""

from __future__ import annotations

import doctest
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import Engine

import provider.nonces as nonces
from datastore.engine import make_engine
from datastore.migrate import upgrade
from provider.errors import RequestValidationError, SignatureError
from provider.nonces import NonceStore, next_nonce

KEY = "0x" + "66" * 32
ADDRESS = Account.from_key(KEY).address
OTHER_KEY = "0x" + "77" * 32


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(db: Engine) -> NonceStore:
    return NonceStore(db)


def test_doctests() -> None:
    assert doctest.testmod(nonces).failed == 0


def test_unknown_address_reads_as_one(store: NonceStore) -> None:
    assert store.get(ADDRESS) == "1"


def test_consume_stores_text_keyed_by_lowercased_address(store: NonceStore) -> None:
    store.consume(ADDRESS.upper().replace("0X", "0x"), "5")
    assert store.get(ADDRESS.lower()) == "5"
    assert store.get(ADDRESS) == "5"


@pytest.mark.parametrize(
    ("first", "second", "accepted"),
    [
        ("2", "3", True),
        ("5", "5", False),
        ("5", "4", False),
        ("5", "5.0", False),  # equal as decimals
        ("5", "5.0000000000000000000000000000001", True),  # beyond float precision
        ("1e3", "1001", True),
        ("1e3", "999.99", False),
        ("1700000000123", "1700000000124", True),  # ms timestamps
        ("1700000000123456789", "1700000000123456788", False),  # ns timestamps
        ("9" * 200, "1" + "0" * 200, True),  # huge digit strings compare exactly
        ("9" * 200, "9" * 199 + "8", False),
        ("2.5", "3", True),
    ],
)
def test_strictly_greater_as_decimals(
    store: NonceStore, first: str, second: str, accepted: bool
) -> None:
    store.consume(ADDRESS, first)
    if accepted:
        store.consume(ADDRESS, second)
        assert store.get(ADDRESS) == second
    else:
        with pytest.raises(SignatureError, match=r"expected nonce \(.*\) > current nonce"):
            store.consume(ADDRESS, second)
        assert store.get(ADDRESS) == first


def test_replay_message_names_both_nonces(store: NonceStore) -> None:
    store.consume(ADDRESS, "5")
    with pytest.raises(SignatureError) as info:
        store.consume(ADDRESS, "5")
    assert info.value.payload()["errors"] == {
        "signature": ["Invalid signature expected nonce (5) > current nonce (5)."]
    }


@pytest.mark.parametrize("nonce", ["-5", "0", "1", "-1e9"])
def test_not_above_initial_one_is_refused(store: NonceStore, nonce: str) -> None:
    with pytest.raises(SignatureError):
        store.consume(ADDRESS, nonce)


@pytest.mark.parametrize(
    "bad",
    [
        "NaN",
        "nan",
        "inf",
        "-Infinity",
        "Infinity",
        "sNaN",
        "abc",
        "",
        " 5",
        "5 ",
        "0x10",
        "1_000",
        "1e",
        "--1",
        "1.2.3",
        "١٢",
        "5\n",
        "1" * 1025,
        "1e1025",
        "1e-1025",
    ],
)
def test_malformed_nonces_are_400_under_nonce(store: NonceStore, bad: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        store.consume(ADDRESS, bad)
    assert "nonce" in info.value.errors
    assert store.get(ADDRESS) == "1"


def test_next_nonce_is_exact_for_long_values() -> None:
    assert next_nonce("9" * 100) == "1" + "0" * 100
    assert next_nonce("1e3") == "1001"


def _race(store: NonceStore, nonce: str, threads: int) -> list[bool]:
    """``threads`` threads consume ``nonce`` at once; whether each was accepted."""
    outcomes: list[bool] = []
    barrier = threading.Barrier(threads)

    def attempt() -> None:
        barrier.wait()
        try:
            store.consume(ADDRESS, nonce)
            outcomes.append(True)
        except SignatureError:
            outcomes.append(False)

    started = [threading.Thread(target=attempt) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return outcomes


def test_concurrent_consumers_same_nonce_exactly_one_wins(store: NonceStore) -> None:
    store.consume(ADDRESS, "10")
    outcomes = _race(store, "11", 50)
    assert outcomes.count(True) == 1
    assert outcomes.count(False) == 49


def test_concurrent_first_use_of_an_address_exactly_one_wins(store: NonceStore) -> None:
    assert _race(store, "2", 20).count(True) == 1


@pytest.mark.postgres
def test_postgres_cas_exactly_one_wins(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        store = NonceStore(engine)
        assert _race(store, "7", 20).count(True) == 1
        assert store.get(ADDRESS) == "7"
    finally:
        engine.dispose()
