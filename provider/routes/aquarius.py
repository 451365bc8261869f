"""An embedded Aquarius-compatible read API, so dApps and ocean.js need no separate Aquarius.

- ``GET /api/aquarius/assets/ddo/<did>``: the DDO as Aquarius returns it, with ``nft``
  (``address``, ``name``, ``symbol``, ``state``, ``tokenURI``, ``owner``, ``created``),
  ``datatokens`` (``address``, ``name``, ``symbol``, ``serviceId``), ``event`` (``tx``,
  ``block``, ``from``, ``contract``, ``datetime`` of the last metadata event), ``stats``
  (``orders``: ``OrderStarted`` events of its datatokens, ``price``, ``allocated``) and
  ``purgatory``;
- ``GET /api/aquarius/assets/metadata/<did>``: its ``metadata`` object.

Both read the provider's DDO source (the embedded indexer, or ``AQUARIUS_URL``); an unknown or
revoked asset answers 404 ``{"error": "Asset DID <did> not found"}``. NFT and datatoken names
are read on-chain (on the DID's chain); what the source already holds (an Aquarius DDO) is
kept as is.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from hexbytes import HexBytes
from web3 import Web3

from contracts_abi import load
from provider.app import Services, services
from provider.asset import STATE_REVOKED, Asset
from provider.chains import Chain
from provider.errors import ProviderError

log = logging.getLogger(__name__)
bp = Blueprint("aquarius", __name__)


def _asset(svc: Services, did: str) -> tuple[Chain, Asset]:
    """The DID's chain and asset; 404 when no served chain holds it (or it is revoked)."""
    chain = svc.chain_of(did, live=False)  # what is indexed answers while its chain is down
    resolver = chain.resolver if chain is not None else None
    asset = resolver.resolve(did) if resolver is not None else None
    if chain is None or asset is None or asset.state == STATE_REVOKED:
        raise ProviderError(f"Asset DID {did} not found", 404)
    return chain, asset


def _call(w3: Any, address: str, name: str, function: str, *args: Any) -> Any:
    contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=load(name).abi)
    try:
        return contract.functions[function](*args).call()
    except Exception as exc:  # a missing name or a chain hiccup leaves the field empty
        log.debug("%s.%s on %s: %s", name, function, address, exc)
        return None


def _order_count(chain: Chain, datatokens: list[str]) -> int:
    if not datatokens:
        return 0
    w3 = chain.web3
    event = w3.eth.contract(abi=load("ERC20Template").abi).events.OrderStarted()
    types = ",".join(i["type"] for i in event.abi["inputs"])
    topic = "0x" + bytes(HexBytes(Web3.keccak(text=f"OrderStarted({types})"))).hex()
    try:
        logs = w3.eth.get_logs(
            {
                "fromBlock": int((chain.addresses or {}).get("startBlock") or 0),
                "toBlock": "latest",
                "address": [Web3.to_checksum_address(a) for a in datatokens],
                "topics": [topic],
            }
        )
    except Exception as exc:  # stats are best effort: the DDO still answers
        log.warning("order count of %s: %s", datatokens, exc)
        return 0
    return len(logs)


def aquarius_ddo(chain: Chain, asset: Asset) -> dict[str, Any]:
    """``asset``'s DDO with the fields Aquarius adds (kept when the source has them), read on
    ``chain``."""
    ddo = dict(asset.ddo)
    w3 = chain.web3
    nft = dict(ddo.get("nft") or {})
    nft.update(address=asset.nft_address, state=asset.state)
    if asset.nft_owner:
        nft["owner"] = asset.nft_owner
    for field, function, args in (
        ("name", "name", ()),
        ("symbol", "symbol", ()),
        ("tokenURI", "tokenURI", (1,)),
    ):
        if field not in nft:
            nft[field] = _call(w3, asset.nft_address, "ERC721Template", function, *args)
    nft.setdefault("created", (ddo.get("event") or {}).get("datetime"))
    ddo["nft"] = nft
    if "datatokens" not in ddo:
        ddo["datatokens"] = [
            {
                "address": str(s.get("datatokenAddress")),
                "name": _call(w3, str(s.get("datatokenAddress")), "ERC20Template", "name"),
                "symbol": _call(w3, str(s.get("datatokenAddress")), "ERC20Template", "symbol"),
                "serviceId": s.get("id"),
            }
            for s in asset.services
            if Web3.is_address(str(s.get("datatokenAddress")))
        ]
    ddo.setdefault("event", {})
    if "stats" not in ddo:
        datatokens = sorted({str(d["address"]) for d in ddo["datatokens"] if d.get("address")})
        ddo["stats"] = {"orders": _order_count(chain, datatokens), "price": {}, "allocated": 0}
    ddo.setdefault("purgatory", {"state": False})
    return ddo


@bp.get("/api/aquarius/assets/ddo/<path:did>")
def ddo(did: str) -> ResponseReturnValue:
    return jsonify(aquarius_ddo(*_asset(services(), did)))


@bp.get("/api/aquarius/assets/metadata/<path:did>")
def metadata(did: str) -> ResponseReturnValue:
    _chain, asset = _asset(services(), did)
    return jsonify(asset.ddo.get("metadata") or {})
