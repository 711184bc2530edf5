"""The Celery configuration tilecast's fault handling relies on (common/taskprotocol.py)."""

from __future__ import annotations

from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import make_celery


def test_tasks_are_acknowledged_late_and_requeued_when_their_process_dies() -> None:
    conf = make_celery(Settings().resolved()).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1


def test_pool_process_bounds_come_from_settings() -> None:
    bounded = Settings.from_env(
        {"TILECAST_WORKER_MAX_TASKS": "500", "TILECAST_WORKER_MAX_MEMORY_MB": "1536"}
    )
    conf = make_celery(bounded).conf
    assert conf.worker_max_tasks_per_child == 500
    assert conf.worker_max_memory_per_child == 1536 * 1024  # Celery counts KiB


def test_zero_means_no_bound() -> None:
    unbounded = Settings.from_env(
        {"TILECAST_WORKER_MAX_TASKS": "0", "TILECAST_WORKER_MAX_MEMORY_MB": "0"}
    )
    conf = make_celery(unbounded).conf
    assert conf.worker_max_tasks_per_child is None
    assert conf.worker_max_memory_per_child is None
    assert Settings().worker_max_tasks == 0  # no recycling by task count by default
