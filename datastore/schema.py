"""Every table of the store, in one :data:`metadata` (SQLAlchemy Core).

This is the schema the code expects; the migrations in ``datastore/migrations/versions`` make a
database match it (``tidewater db upgrade``, and at every start of ``serve`` and ``engine``). A
change here needs a migration: ``tests/storage/test_migrations.py`` fails when the two differ.
Only :mod:`datastore` imports these tables; the rest of the code uses its repositories.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
_TS = sa.DateTime(timezone=True)
#: uint256 values (escrow lock ids, amounts) as decimal strings
_UINT = sa.String(80)
#: the longest nonce a signed request may carry, in characters
NONCE_CHARS = 1024

# -- jobs (operator_engine: the one truth about every job) ----------------------------------

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False, index=True),
    sa.Column("environment", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.Integer, nullable=False, index=True),
    sa.Column("stopreq", sa.Integer, nullable=False, default=0),
    sa.Column("exit_code", sa.Integer),
    sa.Column("oom_killed", sa.Boolean, nullable=False, default=False),
    sa.Column("reason", sa.Text),
    sa.Column("agreement_id", sa.String(128), unique=True),
    # Private engine state (the request without its file objects), scrubbed once terminal.
    sa.Column("request", sa.JSON),
    sa.Column("input_dids", sa.JSON, nullable=False),
    sa.Column("algo_did", sa.String(128), nullable=False),
    sa.Column("date_created", _TS, nullable=False),
    sa.Column("date_started", _TS),
    sa.Column("date_finished", _TS),
    sa.Column("expire_timestamp", sa.BigInteger),
    sa.Column("worker_id", sa.String(200)),
    sa.Column("heartbeat_at", _TS),
    sa.Column("lease_expires_at", _TS),
    sa.Column("container_id", sa.String(100)),
    sa.Column("results_expire_at", _TS),
)

job_results = sa.Table(
    "job_results",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.job_id", ondelete="CASCADE")),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("filesize", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("job_id", "idx"),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "job_id",
        sa.String(64),
        sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("from_status", sa.Integer),
    sa.Column("to_status", sa.Integer, nullable=False),
    sa.Column("at", _TS, nullable=False),
    sa.Column("detail", sa.Text),
)

#: Payment transactions that started a job (each starts at most one), keyed by chain and
#: lowercased tx hash. No foreign key and never deleted with the job: deleting a job does not
#: give its payment back.
consumed_orders = sa.Table(
    "consumed_orders",
    metadata,
    sa.Column("chain_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("tx_id", sa.String(66), primary_key=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("consumed_at", _TS, nullable=False),
)

# -- compute environments managed through the admin API --------------------------------------

compute_envs = sa.Table(
    "compute_envs",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("platform", sa.String(64), nullable=False, default="docker"),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="CREATING"),
    sa.Column("message", sa.Text),
    sa.Column("is_primary", sa.Boolean, nullable=False, default=False),
    sa.Column("source", sa.String(8), nullable=False, default="api"),
    sa.Column("date_created", _TS, nullable=False),
    sa.Column("last_updated", _TS, nullable=False),
    sa.Column("last_used", _TS),
)

#: one-value settings the engine keeps in the store (the primary environment's id)
engine_settings = sa.Table(
    "engine_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

#: platform credentials of environments, the keys Fernet-encrypted
admin_credentials = sa.Table(
    "admin_credentials",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("keys_encrypted", sa.LargeBinary, nullable=False),
    sa.Column("date_created", _TS, nullable=False),
    sa.Column("last_updated", _TS, nullable=False),
)

# -- escrow locks of paid C2D v2 jobs ---------------------------------------------------------

escrow_locks = sa.Table(
    "escrow_locks",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("lock_id", _UINT, nullable=False),
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("escrow", sa.String(42), nullable=False),
    sa.Column("payee", sa.String(42), nullable=False),
    sa.Column("payer", sa.String(42), nullable=False, index=True),
    sa.Column("token", sa.String(42), nullable=False),
    sa.Column("amount", _UINT, nullable=False),
    sa.Column("expiry_s", sa.BigInteger, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("rate_per_minute", sa.String(200), nullable=False),
    sa.Column("min_duration_s", sa.BigInteger, nullable=False),
    sa.Column("max_duration_s", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("lock_tx", sa.String(66)),
    sa.Column("lock_block", sa.BigInteger),
    sa.Column("claim_amount", _UINT),
    sa.Column("claim_tx", sa.String(66)),
    sa.Column("claimed_amount", _UINT),
    sa.Column("detail", sa.Text),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

# -- the provider: nonces, admin tokens, C2D v2 records ---------------------------------------

#: the last nonce each (lowercased) address used
provider_nonces = sa.Table(
    "provider_nonces",
    metadata,
    sa.Column("address", sa.String(42), primary_key=True),
    sa.Column("nonce", sa.String(NONCE_CHARS), nullable=False),
)

#: admin bearer tokens, as sha256 hashes
admin_tokens = sa.Table(
    "admin_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("date_created", _TS, nullable=False),
    sa.Column("revoked_at", _TS),
)

#: what the C2D v2 API knows of its jobs beyond the engine's row
node_jobs = sa.Table(
    "node_jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("agreement_id", sa.String(128), index=True),
    sa.Column("resources", sa.JSON, nullable=False),
    sa.Column("max_duration", sa.Integer, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
)

#: C2D v2 auth tokens invalidated before their expiry
node_revoked_tokens = sa.Table(
    "node_revoked_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

# -- the embedded DDO indexer -----------------------------------------------------------------

#: Data NFTs per chain: the same deployer gives the same addresses on two dev chains.
indexer_chain_nfts = sa.Table(
    "indexer_chain_nfts",
    metadata,
    sa.Column("chain_id", sa.BigInteger, primary_key=True),
    sa.Column("address", sa.String(42), primary_key=True),  # lowercase
    sa.Column("block", sa.BigInteger, nullable=False),
)
indexer_assets = sa.Table(
    "indexer_assets",
    metadata,
    sa.Column("did", sa.String(80), primary_key=True),
    sa.Column("nft_address", sa.String(42), nullable=False),
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("ddo", sa.Text, nullable=False),
    sa.Column("state", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(42), nullable=False),
    sa.Column("block", sa.BigInteger, nullable=False),
)
#: last indexed block per ``<chain id>:<factory>``
indexer_cursor = sa.Table(
    "indexer_cursor",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("block", sa.BigInteger, nullable=False),
)
