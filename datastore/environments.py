"""Compute environments managed through the admin API (table ``compute_envs``) and the
primary environment's id (``engine_settings``). File environments never touch the store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import reading
from datastore.schema import compute_envs, engine_settings
from operator_engine.lifecycle import EnvState
from operator_engine.models import utcnow

_PRIMARY = "primary_env"


class EnvironmentRepository:
    """The store-managed environments of one store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def rows(self) -> list[Any]:
        """Every ``compute_envs`` row, by id."""
        with reading(self.engine) as conn:
            return list(conn.execute(sa.select(compute_envs).order_by(compute_envs.c.id)).all())

    def put(
        self,
        env_id: str,
        config: dict[str, Any],
        *,
        status: EnvState | str = EnvState.AVAILABLE,
        **values: Any,
    ) -> None:
        """Create or replace a store-managed environment (used by the admin API and tests);
        ``status`` must name an :class:`~operator_engine.lifecycle.EnvState` (``ValueError``)."""
        status = EnvState(status).value
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                compute_envs.update()
                .where(compute_envs.c.id == env_id)
                .values(config=config, status=status, last_updated=now, **values)
            ).rowcount
            if not changed:
                conn.execute(
                    compute_envs.insert().values(
                        id=env_id,
                        config=config,
                        status=status,
                        date_created=now,
                        last_updated=now,
                        name=values.pop("name", env_id),
                        **values,
                    )
                )

    def mark_draining(self, env_id: str, message: str) -> None:
        """``DELETING`` with ``message``, its config kept (it takes no new jobs)."""
        with self.engine.begin() as conn:
            conn.execute(
                compute_envs.update()
                .where(compute_envs.c.id == env_id)
                .values(status=EnvState.DELETING.value, message=message)
            )

    def delete(self, env_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(compute_envs.delete().where(compute_envs.c.id == env_id)).rowcount
            )

    def primary(self) -> str | None:
        """The id an operator flagged primary (``POST …/primary``), if any."""
        with reading(self.engine) as conn:
            return conn.execute(
                sa.select(engine_settings.c.value).where(engine_settings.c.key == _PRIMARY)
            ).scalar()

    def set_primary(self, env_id: str) -> None:
        with self.engine.begin() as conn:
            changed = conn.execute(
                engine_settings.update()
                .where(engine_settings.c.key == _PRIMARY)
                .values(value=env_id)
            ).rowcount
            if not changed:
                conn.execute(engine_settings.insert().values(key=_PRIMARY, value=env_id))

    def touch(self, env_id: str) -> None:
        """Record a job submitted to an admin-managed environment (no-op for file envs)."""
        with self.engine.begin() as conn:
            conn.execute(
                compute_envs.update().where(compute_envs.c.id == env_id).values(last_used=utcnow())
            )
