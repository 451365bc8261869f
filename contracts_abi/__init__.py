"""The Ocean V4 contract interfaces tidewater uses, and tooling to deploy them locally."""

from contracts_abi.artifacts import Artifact, contract, load

__all__ = ["Artifact", "contract", "load"]
