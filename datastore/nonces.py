"""The last nonce each address used (table ``provider_nonces``), as text exactly as signed.

Writes are a compare-and-swap (:meth:`NonceRepository.swap`): an ``UPDATE … WHERE nonce =
:seen``, or an ``INSERT`` guarded by the primary key for a new address, so two requests that
read the same stored nonce can never both store theirs.
"""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from datastore.prepared import PreparedRead, PreparedWrite
from datastore.schema import NONCE_CHARS, provider_nonces

__all__ = ["NONCE_CHARS", "NonceRepository"]

#: ``GET nonce`` reads this on every call: compiled once, run on the DBAPI directly.
_STORED = PreparedRead(
    select(provider_nonces.c.nonce).where(provider_nonces.c.address == bindparam("address"))
)


_INSERT = PreparedWrite(
    insert(provider_nonces).values(address=bindparam("who"), nonce=bindparam("new"))
)
_SWAP = PreparedWrite(
    update(provider_nonces)
    .where(
        provider_nonces.c.address == bindparam("who"),
        provider_nonces.c.nonce == bindparam("seen"),
    )
    .values(nonce=bindparam("new"))
)


class NonceRepository:
    """Nonces by lowercased address."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def stored(self, address: str) -> str | None:
        """The nonce text stored for ``address`` (lowercased by the caller); None if none."""
        rows = _STORED.rows(self.engine, address=address)
        return None if not rows else str(rows[0].nonce)

    def swap(self, address: str, seen: str | None, new: str) -> bool:
        """Store ``new`` if ``address``'s nonce is still ``seen`` (None: no row yet); False
        when another writer changed it first. One statement, its own transaction."""
        try:
            if seen is None:
                _INSERT.run(self.engine, who=address, new=new)
                return True
            return _SWAP.run(self.engine, who=address, seen=seen, new=new) == 1
        except IntegrityError:
            return False  # another request inserted this address first
