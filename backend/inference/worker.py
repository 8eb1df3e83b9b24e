"""The re-inference worker process: ``python -m backend.inference.worker JOB_ID`` (spawned by the API)."""

from __future__ import annotations

import logging
import os
import sys

from backend.db.engine import get_engine
from backend.inference.jobs import finish_job, update_job
from backend.inference.reinference import job_progress, run_reinference
from backend.logs import configure_logging
from backend.settings import Settings

log = logging.getLogger("m3.worker")


def run_job(settings: Settings, job_id: int) -> int:
    """Run one re-inference job to the end; 0 on success, 1 on failure (recorded in the job row)."""
    engine = get_engine(settings, pool_size=1, max_overflow=1)
    try:
        update_job(engine, job_id, pid=os.getpid(), message="loading the model")
        try:
            version = run_reinference(settings, engine, job_id, job_progress(engine, job_id))
        except Exception as exc:  # noqa: BLE001
            log.exception("job %d failed", job_id)
            finish_job(engine, job_id, ok=False, message="failed", error=f"{exc.__class__.__name__}: {exc}")
            return 1
        finish_job(engine, job_id, ok=True, message=f"published layer version {version}")
        return 0
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    """Entry point: the job id is the only argument."""
    if len(argv) != 1 or not argv[0].isdigit():
        sys.stderr.write("usage: python -m backend.inference.worker JOB_ID\n")
        return 2
    settings = Settings()
    configure_logging(settings.log_level)
    return run_job(settings, int(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
