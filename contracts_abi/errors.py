"""One exception tree for ``contracts_abi``: callers catch :class:`ContractsError`."""

from __future__ import annotations


class ContractsError(RuntimeError):
    """Base of every error raised by ``contracts_abi``; the message is one clear line."""


class ChainUnavailable(ContractsError):
    """The JSON-RPC endpoint did not answer (down, wrong URL, timeout)."""


class TxFailed(ContractsError):
    """A transaction reverted (``reason`` is the revert reason when the node gave one)."""

    def __init__(self, reason: str, tx_hash: str | None = None) -> None:
        self.reason = reason
        self.tx_hash = tx_hash
        super().__init__(
            f"transaction reverted: {reason}" + (f" (tx {tx_hash})" if tx_hash else "")
        )


class AddressFileError(ContractsError):
    """The Ocean address.json is missing, malformed or has no entry for the chain."""


class DevChainError(ContractsError):
    """The local development chain (ganache) could not be installed or started."""
