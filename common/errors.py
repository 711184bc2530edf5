"""The tilecast exception hierarchy.

Every error a client can cause or see is a :class:`TilecastError`. Each class names
the HTTP status it maps to; ``api/errors.py`` is the one place that turns them into
responses. Workers report failures across the task boundary as
``{"error": cls.code, "message": ...}`` (:func:`task_error_payload`, which adds the
``retry_after`` an error carries) and :func:`error_from_payload` rebuilds them.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TilecastError(Exception):
    """Base class. ``code`` is a stable machine-readable name."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.parameter:
            payload["parameter"] = self.parameter
        return payload


class ConfigurationError(TilecastError):
    """A ``TILECAST_*`` setting that cannot be used."""

    code = "configuration_error"


class BadRequest(TilecastError):
    """A malformed or out-of-bounds request parameter."""

    status = 400
    code = "bad_request"


class SourceRefused(BadRequest):
    """A path that may not be registered (outside the roots, not a file, unreadable)."""

    code = "source_refused"


class OverBudget(BadRequest):
    """A request whose estimated cost is past TILECAST_MAX_REQUEST_COST (common/cost.py)."""

    code = "over_budget"


class Unauthorized(TilecastError):
    """No credentials, or credentials that do not prove who is asking (an expired Girder
    token, a wrong shared secret)."""

    status = 401
    code = "unauthorized"


class Forbidden(TilecastError):
    """Credentials that are valid but may not do this (read a private Girder item)."""

    status = 403
    code = "forbidden"


class RemoteForbidden(TilecastError):
    """A URL source's store refused tilecast's credentials for the object (403/401):
    what tilecast may read is the store's access policy's to change, not a request's."""

    status = 403
    code = "remote_forbidden"


class UriTooLong(TilecastError):
    """A path or query string beyond the configured bounds (api/middleware/limits.py)."""

    status = 414
    code = "uri_too_long"


class RateLimited(TilecastError):
    """The client asked more than its share (TILECAST_RATE_LIMIT): retry after a while."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, parameter: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, parameter=parameter)
        self.retry_after = retry_after


class NotFound(TilecastError):
    status = 404
    code = "not_found"


class UnknownSource(NotFound):
    """An id that names no registered source (an item of the api), or no Girder item.
    Raised through :meth:`of` and :meth:`girder_item`: one wording per kind of id."""

    code = "unknown_source"

    @classmethod
    def of(cls, source_id: str) -> UnknownSource:
        return cls(f"unknown source {source_id!r}")

    @classmethod
    def girder_item(cls, item_id: str) -> UnknownSource:
        return cls(f"unknown Girder item {item_id!r}")


class RemoteNotFound(NotFound):
    """A URL source's object (or bucket) that its store says does not exist."""

    code = "remote_not_found"


class GenerationGone(NotFound):
    """A ``gen=`` URL naming an older generation of a source than the current one: its
    file changed, and tilecast keeps no old file (api/middleware/versioned.py)."""

    code = "generation_gone"


class TileOutOfRange(NotFound):
    code = "tile_out_of_range"


class UnknownJob(NotFound):
    """A pre-rendering job id that does not exist (or whose record expired); raised
    through :meth:`of`, the one wording."""

    code = "unknown_job"

    @classmethod
    def of(cls, job_id: str) -> UnknownJob:
        return cls(f"unknown job {job_id!r}")


class SourceGone(TilecastError):
    """A registered source whose file was deleted, or changed into something no reader
    opens (truncated): nothing of it is served until it is registered again."""

    status = 410
    code = "source_gone"


class VersionGone(TilecastError):
    """A path of the OME-Zarr view pinned to an older generation of a source
    (``/zarr/{id}/v{generation}/``): its file changed and tilecast keeps no old file.
    A 410, never a 404, which zarr readers would take for a chunk never written."""

    status = 410
    code = "version_gone"


class UnsupportedImage(TilecastError):
    """A file that no reader can open, or that is corrupt or too large to decode."""

    status = 422
    code = "unsupported_image"


class UnsupportedFormat(UnsupportedImage):
    """A file whose content is no format any reader reads (a PDF, a zip, text, ...): the
    message names what was detected."""

    status = 415
    code = "unsupported_format"


class NotImplementedFeature(TilecastError):
    """A well-formed request for a feature tilecast does not implement (IIIF rotations,
    qualities and formats beyond the ones it declares)."""

    status = 501
    code = "not_implemented"


class RenderFailed(TilecastError):
    """A render failed in the worker for a reason that is not the request's fault."""

    status = 502
    code = "render_failed"


class ServiceUnavailable(TilecastError):
    """A dependency (Redis, the worker pool) is unreachable; retry later."""

    status = 503
    code = "service_unavailable"
    retry_after: int = 5


class GirderUnavailable(ServiceUnavailable):
    """Girder did not answer (refused, timed out, 5xx): nothing can be checked or read."""

    code = "girder_unavailable"


class RemoteUnavailable(ServiceUnavailable):
    """A URL source's store did not answer (refused, timed out, 5xx after retries), or
    sent fewer bytes than it announced (``remote_truncated``)."""

    code = "remote_unavailable"


class RemoteThrottled(RemoteUnavailable):
    """A URL source's store kept answering "slow down" (429, 503 SlowDown) through
    every retry: asked again after ``retry_after`` seconds, it may answer."""

    code = "remote_throttled"
    retry_after = 10


class RemoteTruncated(RemoteUnavailable):
    """A URL source's store ended an answer before the bytes it announced (a cut
    connection, a proxy's limit): nothing of the short answer is used."""

    code = "remote_truncated"


class Overloaded(ServiceUnavailable):
    """Too much interactive work is queued: answered at once instead of joining a wait
    that would time out (backpressure, api/miss/routing.py)."""

    code = "overloaded"
    retry_after = 2


class TooManyWaiting(Overloaded):
    """As many requests as an api process lets wait for renders (TILECAST_MAX_WAITING)
    already wait: answered at once rather than queued for an app thread in front of the
    hits (api/miss/waitslots.py)."""

    code = "too_many_waiting"
    retry_after = 2


class SourceChanged(ServiceUnavailable):
    """A render asked for a generation of a source whose file has changed since: the
    new file is registered under a newer generation; asking again gets its tiles."""

    code = "source_changed"
    retry_after = 1


class TooCostly(ServiceUnavailable):
    """A render stopped by its time limit (TILECAST_RENDER_SOFT_TIME_LIMIT or the hard
    TILECAST_RENDER_TIME_LIMIT); asked again within TILECAST_TOO_COSTLY_TTL it is
    answered at once (common/refusals.py)."""

    code = "too_costly"
    retry_after = 30


class RenderTimeout(TilecastError):
    """The render did not finish within the request's wait bound."""

    status = 504
    code = "render_timeout"
    retry_after: int = 2


_BY_CODE: dict[str, type[TilecastError]] = {}


def _register(cls: type[TilecastError]) -> None:
    _BY_CODE[cls.code] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(TilecastError)


def task_error_payload(error: TilecastError) -> dict[str, Any]:
    """What a worker reports of ``error`` across the task boundary: its payload and, for
    an error that says when to ask again, its ``retry_after`` -- a store's own
    Retry-After is set on the instance, which the class alone would not give back."""
    payload = error.to_payload()
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        payload["retry_after"] = retry_after
    return payload


def error_from_payload(payload: dict[str, Any]) -> TilecastError:
    """Rebuild an error a worker reported (unknown codes become RenderFailed)."""
    cls = _BY_CODE.get(str(payload.get("error")), RenderFailed)
    return cls(str(payload.get("message", "render failed")), parameter=payload.get("parameter"))
