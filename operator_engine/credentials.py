"""Platform credentials for compute environments, encrypted at rest.

A credential is what a platform needs to run an environment's jobs: a container-registry login
(``provider: "container-reg"``, keys ``registry``, ``userName``, ``password``) so private
algorithm images can be pulled, or a Kubernetes context (``provider: "k8s"``, keys ``context``
and optionally ``kubeconfig``). Environments refer to one by ``credentialsId``.

The keys are encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under
``TIDEWATER_CREDENTIALS_KEY``; the database holds ciphertext only and no answer of the API ever
returns a secret: listings show the key *names* with the secret values masked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine

from datastore.credentials import CredentialRepository, SealedCredential

#: provider -> (required key names, optional key names, secret key names)
PROVIDERS: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    "container-reg": (
        frozenset({"registry", "userName", "password"}),
        frozenset(),
        frozenset({"password"}),
    ),
    "k8s": (frozenset({"context"}), frozenset({"kubeconfig"}), frozenset({"kubeconfig"})),
}
_MASK = "********"


class CredentialsError(ValueError):
    """A credentials request that cannot be served; ``status_code`` is its HTTP status."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class Credential:
    """One stored credential, keys decrypted."""

    id: str
    name: str
    provider: str
    description: str
    keys: dict[str, str]
    date_created: datetime
    last_updated: datetime

    def public_keys(self) -> dict[str, str]:
        """The keys with every secret value masked (what the API may show)."""
        secret = PROVIDERS.get(self.provider, (frozenset(), frozenset(), frozenset()))[2]
        return {k: (_MASK if k in secret else v) for k, v in sorted(self.keys.items())}


def parse_credentials(body: Any) -> tuple[str, str, str, dict[str, str]]:
    """Validate ``{"credentials": {name, provider, description?, keys}}``; raises 400.

    >>> parse_credentials({"credentials": {"name": "r", "provider": "k8s",
    ...                    "keys": {"context": "prod"}}})
    ('r', 'k8s', '', {'context': 'prod'})
    """
    spec = body.get("credentials") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise CredentialsError('body must be a JSON object {"credentials": {...}}')
    unknown = set(spec) - {"name", "provider", "description", "keys"}
    if unknown:
        raise CredentialsError(f"credentials.{sorted(unknown)[0]}: unknown field")
    name, provider = spec.get("name"), spec.get("provider")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise CredentialsError("credentials.name: required, 1-200 characters")
    if provider not in PROVIDERS:
        raise CredentialsError(f"credentials.provider: must be one of {sorted(PROVIDERS)}")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise CredentialsError("credentials.description: must be a string")
    keys = spec.get("keys")
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise CredentialsError("credentials.keys: required, an object of strings")
    required, optional, _ = PROVIDERS[provider]
    missing = sorted(required - set(keys))
    if missing:
        raise CredentialsError(f"credentials.keys.{missing[0]}: required for {provider}")
    extra = sorted(set(keys) - required - optional)
    if extra:
        raise CredentialsError(f"credentials.keys.{extra[0]}: unknown key for {provider}")
    return name.strip(), str(provider), description, dict(keys)


class CredentialStore:
    """Credentials in the store's database, Fernet-encrypted under ``key``.

    ``key`` is ``None`` when ``TIDEWATER_CREDENTIALS_KEY`` is unset: reads of the (empty or
    not) list still work, but nothing can be stored or decrypted.
    """

    def __init__(self, engine: Engine, key: str | None) -> None:
        self.rows = CredentialRepository(engine)
        self._fernet = Fernet(key.encode()) if key else None

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            raise CredentialsError(
                "credentials are disabled: set TIDEWATER_CREDENTIALS_KEY "
                "(a Fernet key: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')",
                503,
            )
        return self._fernet

    def create(self, body: Any) -> str:
        """Store the credentials in ``body``; the new id. 409 when the name is taken."""
        name, provider, description, keys = parse_credentials(body)
        sealed = self._cipher().encrypt(json.dumps(keys).encode())
        cred_id = self.rows.add(name, provider, description, sealed)
        if cred_id is None:
            raise CredentialsError(f"credentials.name: {name!r} exists", 409)
        return cred_id

    def _open(self, row: SealedCredential) -> Credential:
        try:
            keys = json.loads(self._cipher().decrypt(row.keys_encrypted))
        except InvalidToken:
            raise CredentialsError(
                f"credentials {row.id!r} cannot be decrypted: TIDEWATER_CREDENTIALS_KEY changed",
                500,
            ) from None
        return Credential(
            row.id,
            row.name,
            row.provider,
            row.description,
            keys,
            row.date_created,
            row.last_updated,
        )

    def list(self) -> list[Credential]:
        return [self._open(r) for r in self.rows.all()]

    def get(self, cred_id: str) -> Credential | None:
        row = self.rows.get(cred_id)
        return None if row is None else self._open(row)

    def exists(self, cred_id: str) -> bool:
        """True when ``cred_id`` is stored (no decryption needed)."""
        return self.rows.exists(cred_id)

    def delete(self, cred_id: str) -> bool:
        return self.rows.delete(cred_id)


def registry_of(image: str) -> str:
    """The registry host of an image reference, as Docker reads it.

    >>> registry_of("busybox"), registry_of("ghcr.io/o/algo"), registry_of("localhost:5000/a")
    ('docker.io', 'ghcr.io', 'localhost:5000')
    """
    first, sep, _rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def registry_login(credential: Credential | None, image: str) -> dict[str, str] | None:
    """The Docker ``auth_config`` for pulling ``image`` with ``credential``: only a
    container-registry credential, and only for its own registry (a login is never sent to
    another registry).

    >>> cred = Credential("c", "n", "container-reg", "", {"registry": "ghcr.io",
    ...     "userName": "u", "password": "p"}, None, None)  # type: ignore[arg-type]
    >>> registry_login(cred, "ghcr.io/o/a")["username"], registry_login(cred, "busybox")
    ('u', None)
    """
    if credential is None or credential.provider != "container-reg":
        return None
    registry = credential.keys.get("registry", "").removeprefix("https://").rstrip("/")
    if registry_of(image) != registry:
        return None
    return {
        "username": credential.keys["userName"],
        "password": credential.keys["password"],
        "serveraddress": registry,
    }
