"""The store: one schema (:mod:`datastore.schema`), its Alembic migrations
(:mod:`datastore.migrate`, ``tidewater db upgrade``) and one repository per aggregate (jobs,
environments, nonces, admin tokens, credentials, the asset index, the escrow ledger, the C2D v2
records). Nothing outside this package touches a table; see docs/storage.md."""

import logging

# Alembic logs its plugins when imported and "Context impl SQLiteImpl" at every look at the
# revision; datastore.migrate logs one line per upgrade instead. Set before Alembic is imported.
logging.getLogger("alembic").setLevel(logging.WARNING)
