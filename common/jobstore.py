"""A bulk pre-rendering job's record in the state Redis: create, settle, cancel, finish,
list (the spec is common/jobspec.py, the plan common/jobplan.py).

Both sides use this module: the api (and the command line) validate a request against
the source's metadata and create the record; the worker pool's job driver
(workers/precache.py) dispatches the batches and the batch tasks settle them.

Keys (state Redis, never evicted; a running job's keys carry no TTL):

- ``tc:job:{id}`` hash: the record (spec JSON, state, times, counters).
- ``tc:job:{id}:settled`` set: ids of batches that are finished (rendered, skipped or
  given up after their attempts); a batch id is its index in the plan.
- ``tc:job:{id}:leases`` sorted set: batch id -> lease expiry (unix seconds) of every
  batch dispatched but not settled. The driver re-dispatches a batch whose lease has
  expired (its worker died, its task was lost); a running batch renews its lease.
- ``tc:job:{id}:attempts`` hash: batch id -> times dispatched.
- ``tc:job:{id}:errors`` list: a few error samples (newest first).
- ``tc:jobs`` sorted set: every job id by creation time (listing);
  ``tc:jobs:active`` set: the running jobs (what the driver looks at);
  ``tc:jobspec:{hash}`` -> the id of the running job with that spec (deduplication);
  ``tc:jobs:wake`` list: one token when there is news for the driver (a job submitted,
  a batch settled); the driver waits on it between its steps.

The plan is a pure function of the spec (which holds the few metadata fields it
needs), so nobody stores it: batch ``i`` is computed on demand in O(levels).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tilecast.common import lease
from tilecast.common.errors import UnknownJob
from tilecast.common.jobplan import plan
from tilecast.common.jobspec import JobSpec
from tilecast.common.keys import ACTIVE_JOBS_KEY as ACTIVE_KEY
from tilecast.common.keys import (
    DRIVER_LOCK_KEY,
    DRIVER_WAKE_KEY,
    JOB_PREFIX,
    JOBS_KEY,
)
from tilecast.common.keys import job_attempts_key as attempts_key
from tilecast.common.keys import job_errors_key as errors_key
from tilecast.common.keys import job_leases_key as leases_key
from tilecast.common.keys import job_record_key as record_key
from tilecast.common.keys import job_settled_key as settled_key
from tilecast.common.keys import job_spec_key as spec_key

RUNNING = "running"
FINISHED = "finished"
CANCELLED = "cancelled"

# How many error samples a job keeps.
ERROR_SAMPLES = 20


def job_keys(job_id: str) -> list[str]:
    return [
        record_key(job_id),
        settled_key(job_id),
        leases_key(job_id),
        attempts_key(job_id),
        errors_key(job_id),
    ]


def tile_owner(job_id: str, batch: int) -> str:
    """The in-flight marker owner of a batch's tiles: every attempt of the batch shares
    it, so a retry takes over the markers a killed attempt left behind."""
    return f"job:{job_id}:{batch}"


# --- the record ------------------------------------------------------------------------

# The running job of the same spec is read from its record (built from JOB_PREFIX here).
_CREATE = f"""
local existing = redis.call('GET', KEYS[1])
if existing then
  if redis.call('HGET', '{JOB_PREFIX}' .. existing, 'state') == 'running' then
    return {{0, existing}}
  end
end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('LPUSH', KEYS[5], 1)
redis.call('LTRIM', KEYS[5], 0, 0)
return {{1, ARGV[1]}}
"""

# A batch is settled once: its counters are added only by the first settle, which also
# wakes the driver (the next batch, a phase boundary or the job's end is for it to see).
_SETTLE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'done', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
if redis.call('HEXISTS', KEYS[1], 'started') == 0 then
  redis.call('HSET', KEYS[1], 'started', ARGV[5])
end
redis.call('LPUSH', KEYS[4], 1)
redis.call('LTRIM', KEYS[4], 0, 0)
return 1
"""

_CANCEL = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
redis.call('DEL', KEYS[2])
return 1
"""

_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'finished', 'finished', ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
"""


@dataclass(frozen=True)
class JobRecord:
    id: str
    spec: JobSpec
    state: str
    created: float
    total: int
    batches: int
    started: float | None = None
    finished: float | None = None
    done: int = 0
    skipped: int = 0
    failed: int = 0
    renders: int = 0
    next: int = 0

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> JobRecord:
        values = {k.decode(): v.decode() for k, v in raw.items()}

        def optional(name: str) -> float | None:
            return float(values[name]) if values.get(name) else None

        return cls(
            id=values["id"],
            spec=JobSpec.from_payload(json.loads(values["spec"])),
            state=values["state"],
            created=float(values["created"]),
            total=int(values["total"]),
            batches=int(values["batches"]),
            started=optional("started"),
            finished=optional("finished"),
            done=int(values.get("done", 0)),
            skipped=int(values.get("skipped", 0)),
            failed=int(values.get("failed", 0)),
            renders=int(values.get("renders", 0)),
            next=int(values.get("next", 0)),
        )

    def progress(self, now: float | None = None) -> dict[str, Any]:
        """Counters, rate (tiles per second since the first batch settled) and ETA."""
        now = time.time() if now is None else now
        end = self.finished or now
        settled = self.done + self.failed
        elapsed = end - self.started if self.started is not None else 0.0
        rate = settled / elapsed if elapsed > 0 else 0.0
        remaining = max(0, self.total - settled)
        eta = None
        if self.state == RUNNING and rate > 0:
            eta = remaining / rate
        elif self.state != RUNNING:
            eta = 0.0
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "rendered": self.renders,
            "tilesPerSecond": round(rate, 2),
            "eta": None if eta is None else round(eta, 1),
        }

    def to_json(self, errors: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            **self.spec.summary(),
            **self.progress(),
            "batches": self.batches,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "errors": list(errors),
        }


class JobStore:
    """Jobs in the state Redis."""

    def __init__(self, state: redis.Redis) -> None:
        self.state = state
        self._create = state.register_script(_CREATE)
        self._settle = state.register_script(_SETTLE)
        self._cancel = state.register_script(_CANCEL)
        self._finish = state.register_script(_FINISH)

    # -- creating, reading, cancelling ------------------------------------------------------
    def submit(self, spec: JobSpec) -> tuple[JobRecord, bool]:
        """``(record, created)``: a new job, or the running job with an equal spec."""
        the_plan = plan(spec)
        job_id = uuid.uuid4().hex[:16]
        now = time.time()
        fields: dict[str, Any] = {
            "id": job_id,
            "spec": spec.to_json(),
            "state": RUNNING,
            "created": repr(now),
            "total": the_plan.total_tiles,
            "batches": the_plan.total_batches,
            "done": 0,
            "skipped": 0,
            "failed": 0,
            "renders": 0,
            "next": 0,
        }
        argv: list[Any] = [job_id, repr(now)]
        for name, value in fields.items():
            argv.extend((name, value))
        keys = [spec_key(spec.hash), record_key(job_id), JOBS_KEY, ACTIVE_KEY, DRIVER_WAKE_KEY]
        created, found = self._create(keys=keys, args=argv)
        return self.get(found.decode()), bool(created)

    def get(self, job_id: str) -> JobRecord:
        raw = self.state.hgetall(record_key(job_id))
        if not raw:
            raise UnknownJob.of(job_id)
        return JobRecord.from_hash(raw)  # type: ignore[arg-type]

    def errors(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.state.lrange(errors_key(job_id), 0, -1)]  # type: ignore[union-attr]

    def describe(self, job_id: str) -> dict[str, Any]:
        """What ``GET /jobs/{id}`` answers."""
        return self.get(job_id).to_json(self.errors(job_id))

    def list(self, limit: int = 100) -> list[JobRecord]:
        """Newest first; ids whose records have expired are dropped from the index."""
        ids = [i.decode() for i in self.state.zrevrange(JOBS_KEY, 0, limit - 1)]  # type: ignore[union-attr]
        pipe = self.state.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(record_key(job_id))
        records: list[JobRecord] = []
        for job_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                records.append(JobRecord.from_hash(raw))
            else:
                self.state.zrem(JOBS_KEY, job_id)
        return records

    def cancel(self, job_id: str, retention: int) -> JobRecord:
        """Stop a running job; a finished or cancelled job is left as it is."""
        record = self.get(job_id)
        keys = [record_key(job_id), leases_key(job_id), ACTIVE_KEY, spec_key(record.spec.hash)]
        if self._cancel(keys=keys, args=[repr(time.time()), job_id]):
            self.expire(job_id, retention)
        return self.get(job_id)

    def active(self) -> list[str]:
        return sorted(m.decode() for m in self.state.smembers(ACTIVE_KEY))  # type: ignore[union-attr]

    # -- what the driver does ---------------------------------------------------------------
    def expired_leases(self, job_id: str, now: float) -> list[int]:
        found = self.state.zrangebyscore(leases_key(job_id), "-inf", now)
        return [int(b) for b in found]  # type: ignore[union-attr]

    def in_flight(self, job_id: str) -> list[int]:
        return [int(b) for b in self.state.zrange(leases_key(job_id), 0, -1)]  # type: ignore[union-attr]

    def is_settled(self, job_id: str, batch: int) -> bool:
        return bool(self.state.sismember(settled_key(job_id), batch))

    def settled_count(self, job_id: str) -> int:
        return int(self.state.scard(settled_key(job_id)))  # type: ignore[arg-type]

    def attempts(self, job_id: str, batch: int) -> int:
        return int(self.state.hget(attempts_key(job_id), batch) or 0)  # type: ignore[arg-type]

    def dispatched(self, job_id: str, batch: int, lease_until: float) -> int:
        """Record a dispatch of ``batch``: its attempt number, and its lease."""
        pipe = self.state.pipeline()
        pipe.hincrby(attempts_key(job_id), batch, 1)
        pipe.zadd(leases_key(job_id), {str(batch): lease_until})
        attempt, _ = pipe.execute()
        return int(attempt)

    def advance_cursor(self, job_id: str) -> int:
        """The next batch never dispatched (the cursor moves past it)."""
        return int(self.state.hincrby(record_key(job_id), "next", 1)) - 1  # type: ignore[arg-type]

    def drop_lease(self, job_id: str, batch: int) -> None:
        self.state.zrem(leases_key(job_id), batch)

    def finish(self, job_id: str, retention: int) -> bool:
        record = self.get(job_id)
        keys = [record_key(job_id), ACTIVE_KEY, spec_key(record.spec.hash)]
        if self._finish(keys=keys, args=[repr(time.time()), job_id]):
            self.expire(job_id, retention)
            return True
        return False

    def expire(self, job_id: str, retention: int) -> None:
        """A job that no longer runs is kept ``retention`` seconds (0 = forever)."""
        pipe = self.state.pipeline()
        pipe.delete(leases_key(job_id), attempts_key(job_id))
        if retention > 0:
            for key in (record_key(job_id), settled_key(job_id), errors_key(job_id)):
                pipe.expire(key, retention)
        pipe.execute()

    def hold_driver_lock(self, owner: str, ttl: float) -> bool:
        """Take or keep the one job driver's lock (it expires when its holder dies)."""
        return lease.hold(self.state, DRIVER_LOCK_KEY, owner, ttl)

    def release_driver_lock(self, owner: str) -> None:
        lease.release(self.state, DRIVER_LOCK_KEY, owner)

    def wait_for_news(self, timeout: float) -> bool:
        """Wait until a job is submitted or a batch settled (the token they leave), at
        most ``timeout`` seconds; whether there was news."""
        return self.state.blpop([DRIVER_WAKE_KEY], timeout=timeout) is not None

    # -- what a batch task does -------------------------------------------------------------
    def begin_batch(self, job_id: str, batch: int, lease_until: float) -> bool:
        """True when the batch should run: its job runs and it is not settled. Renews
        its lease (only while dispatched: a cancelled job's leases are gone)."""
        pipe = self.state.pipeline(transaction=False)
        pipe.hget(record_key(job_id), "state")
        pipe.sismember(settled_key(job_id), batch)
        pipe.zadd(leases_key(job_id), {str(batch): lease_until}, xx=True)
        pipe.hsetnx(record_key(job_id), "started", repr(time.time()))
        state, settled, _, _ = pipe.execute()
        return state == RUNNING.encode() and not settled

    def progress_batch(self, job_id: str, batch: int, rendered: int, lease_until: float) -> bool:
        """A flush of a running batch: count its renders, renew its lease; False when
        the job no longer runs (cancelled)."""
        pipe = self.state.pipeline(transaction=False)
        if rendered:
            pipe.hincrby(record_key(job_id), "renders", rendered)
        pipe.zadd(leases_key(job_id), {str(batch): lease_until}, xx=True)
        pipe.hget(record_key(job_id), "state")
        return pipe.execute()[-1] == RUNNING.encode()  # type: ignore[no-any-return]

    def add_errors(self, job_id: str, samples: Sequence[dict[str, Any]]) -> None:
        if not samples:
            return
        pipe = self.state.pipeline(transaction=False)
        for sample in samples[:ERROR_SAMPLES]:
            pipe.lpush(errors_key(job_id), json.dumps(sample, sort_keys=True))
        pipe.ltrim(errors_key(job_id), 0, ERROR_SAMPLES - 1)
        pipe.execute()

    def settle(self, job_id: str, batch: int, *, done: int, skipped: int, failed: int) -> bool:
        """Record a finished batch once (its counters with it); False when it was
        settled already (a duplicate delivery)."""
        keys = [record_key(job_id), settled_key(job_id), leases_key(job_id), DRIVER_WAKE_KEY]
        args = [batch, done, skipped, failed, repr(time.time())]
        return bool(self._settle(keys=keys, args=args))

    def retry_later(self, job_id: str, batch: int, at: float) -> None:
        """Let the driver re-dispatch a failed attempt at ``at`` (if still dispatched)."""
        self.state.zadd(leases_key(job_id), {str(batch): at}, xx=True)
