"""The job store's read-only reports for the admin API, the console and settlement: whole rows
by environment, the newest job per environment, the console's live and finished lists, and the
events around one status."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import reading
from datastore.schema import job_events, job_results, jobs

#: what the console shows of a job
_CONSOLE_COLUMNS = [
    jobs.c[name]
    for name in (
        "job_id owner environment status stopreq reason date_created date_started date_finished"
    ).split()
]


class JobReports:
    """The report part of :class:`datastore.jobs.JobStore`: over the ``jobs``, ``job_results``
    and ``job_events`` rows of one store."""

    engine: Engine

    def all_rows(self, environment: str | None = None) -> list[Any]:
        """Whole job rows (``environment``'s only, when given), oldest first."""
        query = sa.select(jobs).order_by(jobs.c.date_created, jobs.c.job_id)
        if environment is not None:
            query = query.where(jobs.c.environment == environment)
        with reading(self.engine) as conn:
            return list(conn.execute(query).all())

    def newest_per_environment(self) -> dict[str, datetime]:
        """The newest job creation time per environment."""
        with reading(self.engine) as conn:
            rows = conn.execute(
                sa.select(jobs.c.environment, sa.func.max(jobs.c.date_created)).group_by(
                    jobs.c.environment
                )
            ).all()
        return {r[0]: r[1] for r in rows}

    def console(
        self, terminal: Collection[int], finished: int, since: datetime
    ) -> tuple[list[Any], list[Any], list[Any]]:
        """The console's rows, in one read: live jobs (oldest first); the ``finished`` newest
        ended jobs with their results' total ``bytes``; the creation, start and end times of
        the jobs that ended after ``since``."""
        statuses = list(terminal)
        sizes = (
            sa.select(job_results.c.job_id, sa.func.sum(job_results.c.filesize).label("bytes"))
            .group_by(job_results.c.job_id)
            .subquery()
        )
        with reading(self.engine) as conn:
            live = conn.execute(
                sa.select(*_CONSOLE_COLUMNS)
                .where(jobs.c.status.not_in(statuses))
                .order_by(jobs.c.date_created, jobs.c.job_id)
            ).all()
            done = conn.execute(
                sa.select(*_CONSOLE_COLUMNS, sizes.c.bytes)
                .outerjoin(sizes, sizes.c.job_id == jobs.c.job_id)
                .where(jobs.c.status.in_(statuses))
                .order_by(jobs.c.date_finished.desc(), jobs.c.job_id)
                .limit(finished)
            ).all()
            recent = conn.execute(
                sa.select(jobs.c.date_created, jobs.c.date_started, jobs.c.date_finished).where(
                    jobs.c.status.in_(statuses), jobs.c.date_finished >= since
                )
            ).all()
        return list(live), list(done), list(recent)

    def events_around(self, job_id: str, status: int) -> list[tuple[int | None, int, datetime]]:
        """(from, to, at) of ``job_id``'s events entering or leaving ``status``, in order."""
        with reading(self.engine) as conn:
            rows = conn.execute(
                sa.select(job_events.c.from_status, job_events.c.to_status, job_events.c.at)
                .where(job_events.c.job_id == job_id)
                .where(sa.or_(job_events.c.to_status == status, job_events.c.from_status == status))
                .order_by(job_events.c.id)
            ).all()
        return [(r.from_status, r.to_status, r.at) for r in rows]
