"""The embedded indexer's tables: data NFTs per chain, their assets' DDOs (JSON text) and a
block cursor per ``<chain id>:<factory>``.

Reads are read-only transactions; the indexer writes one block range at a time inside
:meth:`AssetIndex.writing`, so a range is indexed whole or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import reading
from datastore.schema import indexer_assets, indexer_chain_nfts, indexer_cursor

_ASSETS = indexer_assets
_NFTS = indexer_chain_nfts


class IndexWrite:
    """The writes of one indexed block range, in the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def known_nfts(self, chain_id: int) -> set[str]:
        """The (lowercase) NFT addresses followed on ``chain_id``."""
        query = sa.select(_NFTS.c.address).where(_NFTS.c.chain_id == chain_id)
        return {str(r[0]) for r in self.conn.execute(query)}

    def add_nft(self, chain_id: int, address: str, block: int) -> None:
        self.conn.execute(sa.insert(_NFTS).values(chain_id=chain_id, address=address, block=block))

    def set_state(self, did: str, state: int) -> None:
        self.conn.execute(sa.update(_ASSETS).where(_ASSETS.c.did == did).values(state=state))

    def ddo_text(self, did: str) -> str | None:
        """The stored DDO of ``did`` as JSON text, or None."""
        raw = self.conn.execute(sa.select(_ASSETS.c.ddo).where(_ASSETS.c.did == did)).scalar()
        return None if raw is None else str(raw)

    def put_asset(self, did: str, **row: Any) -> None:
        """Insert or replace ``did``'s row (``nft_address``, ``chain_id``, ``ddo`` text,
        ``state``, ``owner``, ``block``)."""
        changed = self.conn.execute(
            sa.update(_ASSETS).where(_ASSETS.c.did == did).values(**row)
        ).rowcount
        if changed == 0:
            self.conn.execute(sa.insert(_ASSETS).values(did=did, **row))

    def set_cursor(self, name: str, block: int) -> None:
        changed = self.conn.execute(
            sa.update(indexer_cursor).where(indexer_cursor.c.name == name).values(block=block)
        ).rowcount
        if changed == 0:
            self.conn.execute(sa.insert(indexer_cursor).values(name=name, block=block))


class AssetIndex:
    """The indexer's rows in one store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def cursor(self, name: str) -> int | None:
        """The last block indexed for cursor ``name``; None before the first range."""
        with reading(self.engine) as conn:
            value = conn.execute(
                sa.select(indexer_cursor.c.block).where(indexer_cursor.c.name == name)
            ).scalar()
        return None if value is None else int(value)

    def asset(self, did: str, chain_id: int) -> dict[str, Any] | None:
        """``did``'s row as indexed on ``chain_id`` (``ddo`` as JSON text), or None."""
        with reading(self.engine) as conn:
            row = (
                conn.execute(
                    sa.select(_ASSETS).where(_ASSETS.c.did == did, _ASSETS.c.chain_id == chain_id)
                )
                .mappings()
                .first()
            )
        return None if row is None else dict(row)

    def chain_of(self, did: str) -> int | None:
        """The chain id ``did`` was indexed on (by any chain's indexer), or None."""
        with reading(self.engine) as conn:
            value = conn.execute(sa.select(_ASSETS.c.chain_id).where(_ASSETS.c.did == did)).scalar()
        return None if value is None else int(value)

    @contextmanager
    def writing(self) -> Iterator[IndexWrite]:
        """One write transaction for a block range."""
        with self.engine.begin() as conn:
            yield IndexWrite(conn)
