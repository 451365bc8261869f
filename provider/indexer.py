"""An embedded DDO indexer: follows the chain, keeps DDOs in the store
(:class:`datastore.asset_index.AssetIndex`).

It reads the ERC721Factory's ``NFTCreated`` events (factory address from the address file) and,
for data NFTs created by that factory, ``MetadataCreated`` / ``MetadataUpdated`` /
``MetadataState`` (docs/protocol.md §7). Metadata ``flags``: bit 0 = lzma-compressed, bit 1 = ECIES-
encrypted for this provider (decrypted with the provider key). ``metaDataHash`` must equal the
sha256 of the plain DDO, otherwise the event is logged and not indexed. A persisted block cursor
makes restarts cheap; :meth:`Indexer.sync` catches up in bounded steps. There is no background
thread: the resolver (:class:`provider.assets.IndexerResolver`) syncs before a lookup when its
last sync is over a second old, so a DDO published a moment ago is found.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from web3 import Web3
from web3.exceptions import Web3Exception

from contracts_abi import load
from contracts_abi.did import compute_did
from datastore.asset_index import AssetIndex, IndexWrite
from provider import json_limits
from provider.asset import Asset
from provider.metadata import plain_document

log = logging.getLogger(__name__)


def _topic(abi: list[dict[str, Any]], name: str) -> str:
    event = next(e for e in abi if e.get("type") == "event" and e["name"] == name)
    signature = f"{name}({','.join(i['type'] for i in event['inputs'])})"
    return "0x" + Web3.keccak(text=signature).hex().removeprefix("0x")


def decode_metadata(
    flags: bytes, data: bytes, metadata_hash: bytes, private_key: str | None
) -> dict[str, Any]:
    """The plain DDO of a Metadata event; raises ValueError when it cannot be trusted."""
    raw = plain_document(flags[0] if flags else 0, data, metadata_hash, private_key)
    ddo = json_limits.loads(raw.decode("utf-8"))
    if not isinstance(ddo, dict):
        raise ValueError("DDO is not a JSON object")
    return ddo


class Indexer:
    """Follows ``factory``'s NFTs on ``w3`` into tables of ``db``."""

    def __init__(
        self,
        w3: Web3,
        db: sa.Engine,
        *,
        factory: str,
        chain_id: int,
        private_key: str | None,
        start_block: int = 0,
        step: int = 2000,
        max_steps: int = 50,
    ) -> None:
        self.w3 = w3
        self.db = db
        self.factory = Web3.to_checksum_address(factory)
        self.chain_id = chain_id
        self.private_key = private_key
        self.start_block = start_block
        self.step = step
        self.max_steps = max_steps
        self._lock = threading.Lock()
        nft_abi = load("ERC721Template").abi
        self._nft = w3.eth.contract(abi=nft_abi)
        self._factory = w3.eth.contract(address=self.factory, abi=load("ERC721Factory").abi)
        self._t_created = _topic(load("ERC721Factory").abi, "NFTCreated")
        self._t_meta = {
            _topic(nft_abi, "MetadataCreated"): "MetadataCreated",
            _topic(nft_abi, "MetadataUpdated"): "MetadataUpdated",
            _topic(nft_abi, "MetadataState"): "MetadataState",
        }
        self.index = AssetIndex(db)

    # -- store ----------------------------------------------------------------------------
    @property
    def cursor_name(self) -> str:
        """The cursor row of this chain's factory (two dev chains may share an address)."""
        return f"{self.chain_id}:{self.factory.lower()}"

    def cursor(self) -> int:
        value = self.index.cursor(self.cursor_name)
        return value if value is not None else self.start_block - 1

    def get(self, did: str) -> Asset | None:
        """The indexed asset ``did`` of this chain, or None."""
        row = self.index.asset(did, self.chain_id)
        if row is None:
            return None
        return Asset(
            did=row["did"],
            ddo=json_limits.loads(row["ddo"]),
            state=int(row["state"]),
            nft_address=Web3.to_checksum_address(row["nft_address"]),
            nft_owner=row["owner"],
            chain_id=int(row["chain_id"]),
        )

    # -- following the chain ----------------------------------------------------------------
    def sync(self, *, max_steps: int | None = None) -> int:
        """Index new blocks (at most ``max_steps`` ranges); return the new cursor."""
        with self._lock:
            head = self.w3.eth.block_number
            done = self.cursor()
            for _ in range(max_steps or self.max_steps):
                if done >= head:
                    break
                last = min(head, done + self.step)
                self._index_range(done + 1, last)
                done = last
            return done

    def _index_range(self, first: int, last: int) -> None:
        logs = self.w3.eth.get_logs(
            {"fromBlock": first, "toBlock": last, "topics": [[self._t_created, *self._t_meta]]}
        )
        logs = sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))
        with self.index.writing() as index:
            known = index.known_nfts(self.chain_id)
            for entry in logs:
                topic0 = "0x" + bytes(entry["topics"][0]).hex()
                if topic0 == self._t_created:
                    if entry["address"].lower() != self.factory.lower():
                        continue
                    event = self._factory.events.NFTCreated().process_log(entry)
                    address = event["args"]["newTokenAddress"].lower()
                    if address not in known:
                        index.add_nft(self.chain_id, address, first)
                        known.add(address)
                elif entry["address"].lower() in known:
                    self._apply(index, self._t_meta[topic0], entry)
            index.set_cursor(self.cursor_name, last)

    def _apply(self, index: IndexWrite, name: str, entry: Any) -> None:
        event = getattr(self._nft.events, name)().process_log(entry)
        args = event["args"]
        nft_address = Web3.to_checksum_address(entry["address"])
        did = compute_did(nft_address, self.chain_id)
        if name == "MetadataState":
            index.set_state(did, int(args["state"]))
            return
        try:
            ddo = decode_metadata(
                args["flags"], args["data"], args["metaDataHash"], self.private_key
            )
        except Exception as exc:  # any undecodable DDO is skipped, never fatal to the indexer
            log.warning("not indexing %s at block %s: %s", did, entry["blockNumber"], exc)
            return
        if ddo.get("id") != did:
            log.warning("not indexing %s: DDO id %r does not match its NFT", did, ddo.get("id"))
            return
        try:
            owner = (
                self.w3.eth.contract(address=nft_address, abi=self._nft.abi)
                .functions.ownerOf(1)
                .call()
            )
        except (Web3Exception, ValueError):
            owner = ""
        ddo.setdefault("nftAddress", nft_address)
        ddo.setdefault("chainId", self.chain_id)
        when = datetime.fromtimestamp(int(args["timestamp"]), UTC).strftime("%Y-%m-%dT%H:%M:%S")
        # Aquarius's ``event`` (the last metadata event) and ``nft.created`` (the first one)
        ddo["event"] = {
            "tx": "0x" + bytes(entry["transactionHash"]).hex(),
            "block": int(entry["blockNumber"]),
            "from": args.get("createdBy") or args.get("updatedBy"),
            "contract": nft_address,
            "datetime": when,
        }
        created = when if name == "MetadataCreated" else self._created(index, did) or when
        ddo["nft"] = {
            **(ddo.get("nft") or {}),
            "address": nft_address,
            "owner": owner,
            "created": created,
        }
        row = {
            "nft_address": nft_address.lower(),
            "chain_id": self.chain_id,
            "ddo": json.dumps(ddo),
            "state": int(args["state"]),
            "owner": owner,
            "block": int(entry["blockNumber"]),
        }
        index.put_asset(did, **row)

    @staticmethod
    def _created(index: IndexWrite, did: str) -> str | None:
        raw = index.ddo_text(did)
        if raw is None:
            return None
        created = (json_limits.loads(raw).get("nft") or {}).get("created")
        return str(created) if created else None


def indexed_chain(db: sa.Engine, did: str) -> int | None:
    """The chain id ``did`` was indexed on (by any chain's indexer), or None."""
    return AssetIndex(db).chain_of(did)


def wait_indexed(indexer: Indexer, did: str, timeout: float = 5.0) -> Asset | None:
    """Sync until ``did`` appears or ``timeout`` passes (used by tests and tooling)."""
    deadline = time.monotonic() + timeout
    while True:
        indexer.sync()
        found = indexer.get(did)
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
