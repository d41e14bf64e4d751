"""`python -m pipelines`: the retraining runner. Serves the deployment (schedule included) and runs
its flow runs, each in a process of its own, until SIGTERM (which lets the run in flight finish).

The Prefect server it talks to is PREFECT_API_URL, which Prefect reads itself.
"""

from __future__ import annotations

import logging

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.types.entrypoint import EntrypointType

from pipelines.flow import retrain
from pipelines.settings import Settings

# At most one run at a time, across every runner of the deployment, enforced by the Prefect server:
# a run due (by the schedule, on demand or on drift) while one is going waits there
# (AwaitingConcurrencySlot) and runs when the slot frees, never dropped. A runner-local `limit=1`
# would hold it only in that runner, and not across runners.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    retrain.serve(
        name=settings.deployment_name,
        interval=settings.interval_s,
        global_limit=ONE_AT_A_TIME,
        # Imported by module path in each run's process, wherever the runner was started from.
        entrypoint_type=EntrypointType.MODULE_PATH,
        description=f"Retrains {settings.registered_model} every {settings.interval_s:g} s, on drift "
        "and on demand (RetrainingService/Retrain); gated, one run at a time.",
        # The schedule keeps running while a runner restarts; runs due meanwhile wait for it.
        pause_on_shutdown=False,
    )


if __name__ == "__main__":
    main()
