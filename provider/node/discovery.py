"""``GET /node`` (Ocean Node's root document), its nonce and its environments list."""

from __future__ import annotations

from typing import Any

from eth_keys import keys
from flask import jsonify
from flask.typing import ResponseReturnValue

from provider.app import SOFTWARE, VERSION, Services, services
from provider.node import bp
from provider.node.environments import environment_view
from provider.params import address_param, request_params
from provider.routes import aquarius

API = "/api/services"
#: Ocean Node serves Aquarius' DDO reads under the same base.
AQUARIUS = "/api/aquarius/assets/ddo"

#: name → [METHOD, path relative to the base ``/node``], the names ocean.js 8.6.2 looks up.
SERVICE_ENDPOINTS: dict[str, list[str]] = {
    "nonce": ["GET", f"{API}/nonce"],
    "computeEnvironments": ["GET", f"{API}/computeEnvironments"],
    "initializeCompute": ["POST", f"{API}/initializeCompute"],
    "computeStart": ["POST", f"{API}/compute"],
    "freeCompute": ["POST", f"{API}/freeCompute"],
    "computeStatus": ["GET", f"{API}/compute"],
    "computeStop": ["PUT", f"{API}/compute"],
    "computeResult": ["GET", f"{API}/computeResult"],
    "computeStreamableLogs": ["GET", f"{API}/computeStreamableLogs"],
    "generateAuthToken": ["POST", f"{API}/auth/token"],
    "invalidateAuthToken": ["POST", f"{API}/auth/token/invalidate"],
}


def node_public_key(svc: Services) -> str:
    """The provider key's compressed secp256k1 public key (clients ECIES-encrypt to it)."""
    key = keys.PrivateKey(bytes(svc.provider_account.key))
    return "0x" + key.public_key.to_compressed_bytes().hex()


def root_document(svc: Services) -> dict[str, Any]:
    return {
        "nodeId": svc.provider_address,
        "chainIds": [svc.chain_id],
        "providerAddress": svc.provider_address,
        "providerAddresses": {str(svc.chain_id): svc.provider_address},
        "nodePublicKey": node_public_key(svc),
        "serviceEndpoints": SERVICE_ENDPOINTS,
        "software": SOFTWARE,
        "version": VERSION,
    }


@bp.get("")
def root() -> ResponseReturnValue:
    return jsonify(root_document(services()))


@bp.get(f"{API}/nonce")
def nonce() -> ResponseReturnValue:
    address = address_param(request_params(), "userAddress")
    assert address is not None
    return jsonify({"nonce": services().nonces.get(address)})


def environment_list(svc: Services) -> list[dict[str, Any]]:
    envs = {env.id: env for env in svc.engine.environments()}
    live = svc.engine.current_jobs()
    frees = {env.free_of: env for env in envs.values() if env.free_of is not None}
    return [
        environment_view(
            env,
            frees.get(env.id),
            live,
            chain_id=svc.chain_id,
            consumer_address=svc.provider_address,
        )
        for env in envs.values()
        if env.free_of is None
    ]


@bp.get(f"{API}/computeEnvironments")
def compute_environments() -> ResponseReturnValue:
    return jsonify(environment_list(services()))


@bp.get(f"{AQUARIUS}/<path:did>")
def ddo(did: str) -> ResponseReturnValue:
    """The embedded Aquarius read (``provider.routes.aquarius``) under the node's base, for
    ocean.js 8's ``new Aquarius(oceanNodeUri)``."""
    return aquarius.ddo(did)
