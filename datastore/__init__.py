"""The store: one schema (:mod:`datastore.schema`), its Alembic migrations
(:mod:`datastore.migrate`, ``tidewater db upgrade``) and one repository per aggregate (jobs,
environments, nonces, admin tokens, credentials, the asset index, the escrow ledger, the C2D v2
records). Nothing outside this package touches a table; see docs/storage.md."""
