"""Deploy the Ocean V4 contract stack from the real artifacts and read/write address.json.

The address file follows Ocean's ``address.json`` (as bundled in ``ocean-contracts``'
``addresses`` package): ``{network: {"chainId", "Ocean", "Router", "ERC721Factory",
"ERC721Template": {"1": …}, "ERC20Template": {"1": …, "2": …}, "FixedPrice", "Dispenser",
"OPFCommunityFeeCollector", "Escrow", "startBlock"}}``, so ocean.py / ocean.js (3 and 8) can use
it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi.artifacts import contract
from contracts_abi.errors import AddressFileError
from contracts_abi.tx import deploy, send, transfer_eth

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def deploy_stack(w3: Web3, deployer: LocalAccount) -> dict[str, Any]:
    """Deploy and wire the Ocean V4 stack; return its addresses in address.json form.

    Order and wiring: Ocean token (``MockOcean``, minted to the deployer), the OPF community
    fee collector, the ``BPool`` template, ``FactoryRouter`` (owner, Ocean, pool template,
    collector), the ERC721 and ERC20 templates, ``ERC721Factory`` (templates + router),
    ``FixedRateExchange`` and ``Dispenser`` (router), ``Escrow`` (router, collector: C2D v2
    payments); then ``router.addFactory``, ``addFixedRateContract``, ``addDispenserContract``
    and ``factory.addTokenTemplate(ERC20TemplateEnterprise)`` (index 2).
    """
    owner = deployer.address
    start_block = w3.eth.block_number
    ocean = deploy(w3, deployer, "MockOcean", owner)
    collector = deploy(w3, deployer, "OPFCommunityFeeCollector", owner, owner)
    # The router insists on a pool template; V4 pools are retired but BPool still ships.
    pool_template = deploy(w3, deployer, "BPool")
    router = deploy(w3, deployer, "FactoryRouter", owner, ocean, pool_template, collector, [])
    erc721_template = deploy(w3, deployer, "ERC721Template")
    erc20_template = deploy(w3, deployer, "ERC20Template")
    erc20_enterprise = deploy(w3, deployer, "ERC20TemplateEnterprise")
    factory = deploy(w3, deployer, "ERC721Factory", erc721_template, erc20_template, router)
    fixed_rate = deploy(w3, deployer, "FixedRateExchange", router)
    dispenser = deploy(w3, deployer, "Dispenser", router)
    escrow = deploy(w3, deployer, "Escrow", router, collector)

    router_c = contract(w3, "FactoryRouter", router)
    send(w3, deployer, router_c.functions.addFactory(factory))
    send(w3, deployer, router_c.functions.addFixedRateContract(fixed_rate))
    send(w3, deployer, router_c.functions.addDispenserContract(dispenser))
    factory_c = contract(w3, "ERC721Factory", factory)
    send(w3, deployer, factory_c.functions.addTokenTemplate(erc20_enterprise))

    return {
        "chainId": w3.eth.chain_id,
        "Ocean": ocean,
        "OPFCommunityFeeCollector": collector,
        "Router": router,
        "FactoryRouter": router,  # alias: the contract's own name
        "poolTemplate": pool_template,
        "ERC721Template": {"1": erc721_template},
        "ERC20Template": {"1": erc20_template, "2": erc20_enterprise},
        "ERC721Factory": factory,
        "FixedPrice": fixed_rate,
        "Dispenser": dispenser,
        "Escrow": escrow,
        "startBlock": start_block,
    }


#: Gas money ``tidewater chain`` gives the provider's payee wallet (it sends escrow locks and
#: claims) when it holds less than half of it.
PAYEE_GAS = 10**18


def fund_gas(w3: Web3, funder: LocalAccount, address: str, amount: int = PAYEE_GAS) -> int:
    """Top ``address`` up to ``amount`` wei from ``funder`` when it holds less than half of it;
    return the wei sent (0 when it had enough)."""
    target = Web3.to_checksum_address(address)
    balance = int(w3.eth.get_balance(target))
    if balance >= amount // 2:
        return 0
    transfer_eth(w3, funder, target, amount - balance)
    return amount - balance


def write_address_file(
    path: str | Path,
    addresses: dict[str, Any],
    chain_id: int,
    network: str = "development",
) -> Path:
    """Write ``addresses`` as chain ``chain_id``'s entry of the Ocean address.json at ``path``.

    An entry with the same ``chainId`` is replaced under its own name; otherwise the entry is
    added as ``network`` (``<network>-<chain id>`` when that name holds another chain). Other
    networks already in the file are kept (a malformed existing file raises
    :class:`AddressFileError` rather than being overwritten); the parent folder is created. The
    write is atomic (temporary file + rename), so a reader never sees half a file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {}
    if target.exists():
        try:
            document = json.loads(target.read_text())
        except ValueError as exc:
            raise AddressFileError(
                f"address file {target} is not valid JSON ({exc}): fix or remove it"
            ) from None
        except OSError as exc:
            raise AddressFileError(
                f"address file {target} cannot be read: {exc.strerror}"
            ) from None
        if not isinstance(document, dict):
            raise AddressFileError(f"address file {target} must hold a JSON object of networks")
    name = next(
        (
            key
            for key, entry in document.items()
            if isinstance(entry, dict) and str(entry.get("chainId")) == str(chain_id)
        ),
        None,
    )
    if name is None:
        taken = isinstance(document.get(network), dict)
        name = f"{network}-{chain_id}" if taken else network
    document[name] = {**addresses, "chainId": chain_id}
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(target)
    return target


def read_address_file(path: str | Path, chain_id: int) -> dict[str, Any]:
    """Return the address.json entry for ``chain_id`` (any network name).

    Raises :class:`AddressFileError` (one line) for a missing or unreadable file, bad JSON,
    no entry for ``chain_id``, or an entry without ``ERC721Factory``.
    """
    target = Path(path)
    try:
        text = target.read_text()
    except FileNotFoundError:
        raise AddressFileError(
            f"address file {target} does not exist: run `tidewater chain` or set ADDRESS_FILE"
        ) from None
    except OSError as exc:
        raise AddressFileError(f"address file {target} cannot be read: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise AddressFileError(f"address file {target} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise AddressFileError(f"address file {target} must hold a JSON object of networks")
    for entry in document.values():
        if isinstance(entry, dict) and str(entry.get("chainId")) == str(chain_id):
            if not entry.get("ERC721Factory"):
                raise AddressFileError(
                    f"address file {target}: chain {chain_id} has no ERC721Factory address"
                )
            return entry
    raise AddressFileError(f"address file {target} has no entry for chain id {chain_id}")
