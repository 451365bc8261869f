"""The one error boundary (provider.errors): web3 errors no route gave a meaning, the admin
API's documented shape, stored-credentials errors."""

from __future__ import annotations

import pytest
from eth_account import Account
from flask import Flask
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, Web3Exception

from operator_engine.credentials import CredentialsError
from provider.app import Services
from provider.chains import Chain
from provider.errors import AdminError, ProviderError, register_error_handlers


def _app(error: Exception, *, chain: Chain | None = None) -> Flask:
    app = Flask(__name__)
    register_error_handlers(app)
    chains = {} if chain is None else {chain.chain_id: chain}
    services = Services(settings=None, db=None, engine=None, nonces=None, chains=chains)  # type: ignore[arg-type]

    @app.get("/call")
    def call() -> str:
        if chain is not None:
            services.chain(chain.chain_id, live=False)  # the request picks its chain
        raise error

    return app


def _chain() -> Chain:
    return Chain(chain_id=8996, url="http://127.0.0.1:9", web3=None, account=Account.create())


@pytest.mark.parametrize(
    "error",
    [ContractLogicError("execution reverted"), BadFunctionCallOutput("no code"), Web3Exception()],
)
def test_a_web3_error_answers_503_naming_the_requests_chain(error: Web3Exception) -> None:
    chain = _chain()
    chain._live_at = 0.0  # as if its node had answered
    reply = _app(error, chain=chain).test_client().get("/call")
    assert reply.status_code == 503
    assert reply.json == {
        "error": "chain 8996 is unavailable: its RPC endpoint did not answer "
        f"({type(error).__name__}); try again later"
    }
    assert chain._live_at == float("-inf")  # marked down: its node is asked again next time


def test_a_web3_error_outside_any_chain_is_an_internal_error() -> None:
    reply = _app(ContractLogicError("reverted")).test_client().get("/call")
    assert reply.status_code == 500 and reply.json == {"error": "internal error"}


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (AdminError("name: required"), 400, {"message": "name: required"}),
        (AdminError("admin API: invalid or revoked token", 403), 403, None),
        (CredentialsError("credentials 'x' not found", 404), 404, None),
        (ProviderError("Job not found", 404), 404, {"error": "Job not found"}),
    ],
)
def test_every_error_of_the_tree_answers_json_with_its_status(
    error: Exception, status: int, body: dict[str, str] | None
) -> None:
    reply = _app(error).test_client().get("/call")
    assert reply.status_code == status
    assert reply.json == (body or {"message": str(error)})
