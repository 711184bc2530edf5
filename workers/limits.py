"""What a node does when its pool process was killed at a task's hard time limit.

Celery's prefork pool kills the process past ``time_limit`` (workers/tasks.py handles
the soft limit in the process itself) and, in the node's main process, reports the task
failed with TimeLimitExceeded through the ``task_failure`` signal. The killed process
could not announce anything, so its waiters would wait out their timeout and the
in-flight marker its TTL. Here the node announces ``too_costly`` for the task's key
(which drops the marker), remembers the refusal for ``TILECAST_TOO_COSTLY_TTL``
(common/refusals.py) so the next asker is answered at once, and frees the task's slot
in its source's pool share.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import redis
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure

from tilecast.common import counters, share
from tilecast.common.errors import TooCostly
from tilecast.common.inflight import Completion, announce
from tilecast.common.redisconn import connect
from tilecast.common.refusals import refuse
from tilecast.common.settings import get_settings
from tilecast.common.taskprotocol import TASK_DESCRIBE_SOURCE
from tilecast.workers.adopt import _REQUEST_PARSERS as REQUEST_PARSERS

log = logging.getLogger(__name__)

_state: redis.Redis | None = None
_handled: deque[str] = deque(maxlen=1024)
_state_lock = threading.Lock()


def _state_client() -> redis.Redis:
    global _state
    with _state_lock:
        if _state is None:
            _state = connect(get_settings().state_url)
        return _state


def task_key(name: str, payload: Mapping[str, Any]) -> str | None:
    """The key a one-answer task writes and announces; None for bulk work."""
    if name == TASK_DESCRIBE_SOURCE:
        return str(payload["done_key"])
    parse = REQUEST_PARSERS.get(name)
    if parse is None:
        return None
    return str(parse(payload["request"]).key(int(payload["generation"])))


def killed(state: redis.Redis, name: str, task_id: str, payload: Mapping[str, Any]) -> None:
    """Announce, remember and release what the killed task ``task_id`` held."""
    settings = get_settings()
    key = task_key(name, payload)
    request = payload.get("request")
    source = request.get("source") if isinstance(request, Mapping) else None
    if isinstance(source, str):
        share.finish(state, source, task_id)
    counters.incr(state, counters.RENDERS_KILLED)
    if key is None:
        return  # bulk: the job driver's lease sends the batch again
    error = TooCostly(
        f"the render passed its time limit of {settings.render_time_limit:g} s and was "
        f"stopped; retry after {settings.too_costly_ttl} s"
    )
    refuse(state, key, error, settings.too_costly_ttl)
    announce(state, Completion(key, error=error.to_payload()))
    log.warning("%s[%s] killed at its hard time limit; %s answered too_costly", name, task_id, key)


@task_failure.connect
def _on_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    **_kwargs: Any,
) -> None:
    if not isinstance(exception, TimeLimitExceeded):
        return  # tilecast's tasks report their own failures; only a kill lands here
    with _state_lock:
        # Celery may send the signal twice for one kill (measured with 5.7).
        if task_id in _handled:
            return
        _handled.append(str(task_id))
    try:
        payload = args[0]
        killed(_state_client(), str(getattr(sender, "name", "")), str(task_id), payload)
    except (redis.RedisError, LookupError, TypeError, ValueError) as exc:
        log.warning("could not release what a killed task held: %s", exc)
