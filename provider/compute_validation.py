"""Compute-start validation (docs/protocol.md §6): a request in, a ``JobRequest`` out.

Every refusal is a :class:`ResourceError` ``{"error": {resource: code}}`` (or a validation /
business error for missing fields and unknown environments). Checks run in this order: fields,
signature + nonce, environment, each dataset (DDO, service, state, credentials, files, order),
the algorithm (meta or DID: container, trust, checksums, files, order), provider fee paid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from web3 import Web3

from contracts_abi.checksums import container_section_checksum, files_checksum
from operator_engine.fetch import FetchError
from operator_engine.models import (
    AlgorithmInput,
    ComputeEnvironment,
    DatasetInput,
    JobRequest,
    Payments,
)
from operator_engine.provision import MAX_ALGORITHM_BYTES
from operator_engine.storage import fetch_bytes
from provider import json_limits
from provider.asset import STATE_ACTIVE, STATE_UNLISTED, Asset
from provider.asset_checks import (
    check_container,
    check_credentials,
    decrypt_files,
    parse_json_field,
    same_address,
)
from provider.chains import Chain
from provider.engine_port import EnginePort
from provider.errors import ProviderError, RequestValidationError, ResourceError
from provider.fees import fee_amount, token_decimals
from provider.orders import Order, OrderError, OrderValidator, ProviderFeeInvalid
from provider.params import lookup, text_param
from tidewater.engine_config import storage_config

if TYPE_CHECKING:
    from provider.app import Services

log = logging.getLogger(__name__)

UNKNOWN_ENVIRONMENT = "Compute environment does not exist"


@dataclass(frozen=True)
class ValidatedCompute:
    """What the route needs to submit the job."""

    request: JobRequest
    orders: list[Order]
    #: lowercased tx hash → the request field that carries it (``dataset.transferTxId``…)
    order_fields: dict[str, str] = field(default_factory=dict)
    #: the chain the orders were checked on (the request's chain)
    chain_id: int = 0

    def payments(self) -> Payments:
        """The payment txs this job consumes (docs/protocol.md §5: each starts at most one job)."""
        return Payments.of(self.chain_id, [order.tx_id for order in self.orders])


class ComputeValidator:
    """Validates one compute request against ``svc`` (the provider's services)."""

    def __init__(
        self,
        svc: Services,
        chain: Chain,
        params: dict[str, Any],
        requester: str,
        env: ComputeEnvironment,
        *,
        orders_required: bool = True,
    ):
        """``chain``: the request's chain. ``orders_required=False`` (a free tier that waives
        orders): items without a ``transferTxId`` pass without an order; one that is given is
        still checked."""
        self.orders_required = orders_required
        self.svc = svc
        self.chain = chain
        self.params = params
        self.requester = requester
        self.env = chain.offer(env)
        self.private_key = chain.private_key
        self.orders = OrderValidator(chain.web3, chain.provider_address)
        self._assets: dict[str, Asset | None] = {}

    # -- lookups ------------------------------------------------------------------------------
    def resolve(self, did: str) -> Asset | None:
        if did not in self._assets:
            resolver = self.chain.resolver
            self._assets[did] = resolver.resolve(did) if resolver is not None else None
        return self._assets[did]

    def files_of(
        self, asset: Asset, service: dict[str, Any], resource: str
    ) -> list[dict[str, Any]]:
        try:
            payload = decrypt_files(self.private_key, service.get("files"))
        except Exception as exc:  # undecryptable files are the asset's fault, not ours
            log.info("cannot decrypt files of %s: %s", asset.did, exc)
            raise ResourceError(resource, "file_unavailable") from None
        if not same_address(payload.get("datatokenAddress"), service.get("datatokenAddress")):
            raise ResourceError(resource, "file_unavailable")
        if not same_address(payload.get("nftAddress"), asset.nft_address):
            raise ResourceError(resource, "file_unavailable")
        return [f for f in payload["files"] if isinstance(f, dict)]

    def check_order(
        self,
        item: dict[str, Any],
        asset: Asset,
        index: int,
        service: dict[str, Any],
        code: str,
        resource: str,
    ) -> Order | None:
        if not self.orders_required and not item.get("transferTxId"):
            return None
        try:
            return self.orders.validate(
                tx_id=str(item.get("transferTxId")),
                requester=self.requester,
                nft_address=asset.nft_address,
                datatoken=str(service.get("datatokenAddress")),
                service_id=str(service.get("id")),
                service_index=index,
                service_timeout=int(service.get("timeout") or 0),
                environment=self.env.id,
            )
        except ProviderFeeInvalid as exc:
            if "environment" in str(exc):
                raise ResourceError("order", "fees_not_paid") from None
            log.info("order %s refused: %s", item.get("transferTxId"), exc)
            raise ResourceError(resource, code) from None
        except OrderError as exc:
            log.info("order %s refused: %s", item.get("transferTxId"), exc)
            raise ResourceError(resource, code) from None

    # -- datasets --------------------------------------------------------------------------------
    def dataset(
        self, item: Any, resource: str, main: bool
    ) -> tuple[DatasetInput, Asset, dict[str, Any], Order | None]:
        if not isinstance(item, dict) or not item.get("documentId"):
            raise ResourceError(resource, "missing")
        if (self.orders_required and not item.get("transferTxId")) or not item.get("serviceId"):
            raise ResourceError(resource, "missing")
        did = str(item["documentId"])
        asset = self.resolve(did)
        if asset is None:
            raise ResourceError(resource, "did_not_found")
        index, service = asset.require_service(
            str(item["serviceId"]), ResourceError(f"{resource}.serviceId", "not_found")
        )
        kind = service.get("type")
        if main and kind != "compute":
            raise ResourceError(resource, "main_service_compute")
        if kind not in ("access", "compute"):
            raise ResourceError(resource, "service_not_access_compute")
        if asset.state not in (STATE_ACTIVE, STATE_UNLISTED):
            raise ResourceError(resource, "asset_not_consumable")
        check_credentials(asset.ddo, self.requester, resource)
        files = self.files_of(asset, service, resource)
        order = self.check_order(item, asset, index, service, "order_invalid", resource)
        dataset = DatasetInput(
            did=did,
            ddo=asset.ddo,
            service_id=str(service["id"]),
            files=files,
            transfer_tx_id=str(item["transferTxId"]) if item.get("transferTxId") else None,
            userdata=parse_json_field(item.get("userdata"), f"{resource}.userdata"),
        )
        return dataset, asset, service, order

    # -- algorithm -------------------------------------------------------------------------------
    def algorithm(
        self, computes: list[tuple[str, dict[str, Any]]]
    ) -> tuple[AlgorithmInput, Order | None]:
        algo = self.params.get("algorithm")
        if not isinstance(algo, dict):
            raise RequestValidationError({"algorithm": ["The algorithm field is required."]})
        custom = parse_json_field(
            algo.get("algocustomdata", self.params.get("algocustomdata")), "algocustomdata"
        )
        userdata = parse_json_field(algo.get("userdata"), "algorithm.userdata")
        if algo.get("documentId"):
            return self.published_algorithm(algo, computes, custom, userdata)
        meta = algo.get("meta")
        if not isinstance(meta, dict):
            raise ResourceError("algorithm", "missing_meta_documentId")
        for resource, compute in computes:
            if not compute.get("allowRawAlgorithm", False):
                raise ResourceError(resource, "no_raw_algo_allowed")
        sources = [k for k in ("url", "rawcode", "remote") if meta.get(k)]
        if len(sources) != 1:
            raise ResourceError("algorithm", "meta_oneof_url_rawcode_remote")
        container = self.container(meta.get("container"))
        if sources[0] == "rawcode":
            return AlgorithmInput(
                container=container,
                rawcode=str(meta["rawcode"]),
                userdata=userdata,
                algocustomdata=custom,
            ), None
        if sources[0] == "remote":
            raise ResourceError("algorithm", "meta_oneof_url_rawcode_remote")
        files = [{"type": "url", "url": str(meta["url"]), "method": "GET"}]
        return AlgorithmInput(
            container=container, files=files, userdata=userdata, algocustomdata=custom
        ), None

    @staticmethod
    def container(container: Any, prefix: str = "algorithm.container.") -> dict[str, Any]:
        return check_container(container, prefix)

    def published_algorithm(
        self,
        algo: dict[str, Any],
        computes: list[tuple[str, dict[str, Any]]],
        custom: dict[str, Any] | None,
        userdata: dict[str, Any] | None,
    ) -> tuple[AlgorithmInput, Order | None]:
        if (self.orders_required and not algo.get("transferTxId")) or not algo.get("serviceId"):
            raise ResourceError("algorithm", "missing")
        did = str(algo["documentId"])
        asset = self.resolve(did)
        if asset is None:
            raise ResourceError("algorithm", "did_not_found")
        if asset.asset_type != "algorithm":
            raise ResourceError("algorithm", "not_algo")
        index, service = asset.require_service(
            str(algo["serviceId"]), ResourceError("algorithm", "not_found")
        )
        if service.get("type") not in ("access", "compute"):
            raise ResourceError("algorithm", "service_not_access_compute")
        if asset.state not in (STATE_ACTIVE, STATE_UNLISTED):
            raise ResourceError("algorithm", "asset_not_consumable")
        check_credentials(asset.ddo, self.requester, "algorithm")
        container = self.container(
            ((asset.ddo.get("metadata") or {}).get("algorithm") or {}).get("container")
        )
        files = self.files_of(asset, service, "algorithm")
        self.check_trust(asset, container, files, computes)
        order = self.check_order(algo, asset, index, service, "in_use_or_not_on_chain", "algorithm")
        return AlgorithmInput(
            container=container,
            did=did,
            ddo=asset.ddo,
            files=files,
            service_id=str(service["id"]),
            transfer_tx_id=str(algo["transferTxId"]) if algo.get("transferTxId") else None,
            userdata=userdata,
            algocustomdata=custom,
        ), order

    def check_trust(
        self,
        asset: Asset,
        container: dict[str, Any],
        files: list[dict[str, Any]],
        computes: list[tuple[str, dict[str, Any]]],
    ) -> None:
        contents: list[bytes] | None = None
        for resource, compute in computes:
            publishers = compute.get("publisherTrustedAlgorithmPublishers") or []
            if publishers and not any(same_address(p, asset.nft_owner) for p in publishers):
                raise ResourceError(resource, "not_trusted_algo_publisher")
            trusted = compute.get("publisherTrustedAlgorithms") or []
            if not trusted:
                continue
            entry = next(
                (t for t in trusted if isinstance(t, dict) and t.get("did") == asset.did), None
            )
            if entry is None:
                raise ResourceError(resource, "not_trusted_algo")
            if entry.get("filesChecksum"):
                if contents is None:
                    contents = self.fetch_all(files)
                if str(entry["filesChecksum"]).lower() != files_checksum(contents):
                    raise ResourceError(resource, "algorithm_file_checksum_mismatch")
            wanted = entry.get("containerSectionChecksum")
            if wanted and str(wanted).lower() != container_section_checksum(container):
                raise ResourceError(resource, "algorithm_container_checksum_mismatch")

    def fetch_all(self, files: list[dict[str, Any]]) -> list[bytes]:
        try:
            config = storage_config(self.svc.settings, timeout=10)
            return [fetch_bytes(f, config, max_bytes=MAX_ALGORITHM_BYTES) for f in files]
        except FetchError as exc:
            log.info("algorithm files unavailable: %s", exc)
            raise ResourceError("algorithm", "file_unavailable") from None

    # -- fees ---------------------------------------------------------------------------------
    def check_fee_paid(self, order: Order) -> None:
        """The job's fee (carried by the first dataset) covers the env's price."""
        if float(self.env.price_min) <= 0:
            return
        fee = order.provider_fee
        if not same_address(fee["providerFeeToken"], self.env.fee_token):
            raise ResourceError("order", "fees_not_paid")
        try:
            data = json_limits.loads(bytes.fromhex(fee["providerData"][2:]).decode("utf-8"))
            seconds = int(int(fee["validUntil"]) - float(data["timestamp"]))
        except (ValueError, KeyError, TypeError):
            raise ResourceError("order", "fees_not_paid") from None
        owed = fee_amount(
            self.env.price_min, seconds, token_decimals(self.chain.web3, self.env.fee_token)
        )
        if int(fee["providerFeeAmount"]) < owed:
            raise ResourceError("order", "fees_not_paid")


def environment_of(engine: EnginePort, env_id: str | None) -> ComputeEnvironment:
    """The engine's environment ``env_id`` (``None``: the primary one); unknown → 400
    ``Compute environment does not exist``."""
    try:
        env = engine.primary_environment() if env_id is None else engine.environment(env_id)
    except Exception as exc:  # the engine's UnknownEnvironment (or a KeyError) alike
        log.debug("environment %r: %s", env_id, exc)
        env = None
    if env is None:
        raise ProviderError(UNKNOWN_ENVIRONMENT, 400)
    return env


def validate_inputs(
    validator: ComputeValidator, items: list[tuple[str, Any, bool]]
) -> tuple[list[DatasetInput], list[Order | None], AlgorithmInput]:
    """Validate the datasets ``(resource, item, is_main)`` and the request's algorithm; the
    orders found (datasets first, then a published algorithm's; None where waived)."""
    datasets: list[DatasetInput] = []
    orders: list[Order | None] = []
    computes: list[tuple[str, dict[str, Any]]] = []
    for resource, item, main in items:
        dataset, _asset, service, order = validator.dataset(item, resource, main)
        datasets.append(dataset)
        orders.append(order)
        if service.get("type") == "compute":
            computes.append((resource, service.get("compute") or {}))
    algorithm, algo_order = validator.algorithm(computes)
    if algorithm.did is not None:
        orders.append(algo_order)
    return datasets, orders, algorithm


def validate_compute(svc: Services, params: dict[str, Any], requester: str) -> ValidatedCompute:
    """Validate an already signature-checked compute request into a JobRequest."""
    env = environment_of(svc.engine, text_param(params, "environment"))
    chain = svc.request_chain(text_param(params, "chainId"), lookup(params, "dataset.documentId"))
    if chain is None:
        raise ResourceError("dataset", "did_not_found")
    validator = ComputeValidator(svc, chain, params, Web3.to_checksum_address(requester), env)
    items: list[tuple[str, Any, bool]] = [("dataset", params.get("dataset"), True)]
    extra = params.get("additionalDatasets") or params.get("additionalInputs") or []
    if not isinstance(extra, list):
        raise RequestValidationError(
            {"additionalDatasets": ["The additionalDatasets field must be a list."]}
        )
    items += [(f"datasets[{i}]", item, False) for i, item in enumerate(extra, start=1)]
    datasets, found, algorithm = validate_inputs(validator, items)
    orders = [order for order in found if order is not None]
    assert len(orders) == len(found)  # V4 requires an order of every input
    resources = [resource for resource, _item, _main in items] + ["algorithm"]
    fields: dict[str, str] = {}
    for resource, order in zip(resources, orders, strict=False):
        fields.setdefault(order.tx_id.lower(), f"{resource}.transferTxId")
    validator.check_fee_paid(orders[0])
    request = JobRequest(
        owner=validator.requester,
        environment=env.id,
        datasets=datasets,
        algorithm=algorithm,
        agreement_id=orders[0].tx_id.lower(),
        expire_timestamp=int(orders[0].provider_fee["validUntil"]),
        chain_id=chain.chain_id,
    )
    return ValidatedCompute(
        request=request, orders=orders, order_fields=fields, chain_id=chain.chain_id
    )


__all__ = ["ComputeValidator", "ValidatedCompute", "validate_compute", "validate_inputs"]
