"""Objects in S3 (and S3-compatible stores), Google Cloud Storage and Azure Blob Storage,
read through ``obstore`` (Rust's ``object_store`` crate; docs/REMOTE.md says why).

Credentials come from the standard chains: the store's own environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``, ``GOOGLE_*``,
``AZURE_*``), web identity tokens, ECS task roles and EC2 instance roles (IMDSv2); for
S3, when boto3 is installed and finds credentials, boto3's chain instead, which adds the
shared config and credentials files, profiles (``AWS_PROFILE``) and SSO. A source may
ask for anonymous access (``skip_signature``), requester-pays, a region, and an
endpoint from ``TILECAST_REMOTE_ENDPOINTS`` (an S3-compatible store).

Every request is bounded by ``remote_timeout`` (connect, and between bytes); throttled
(429, 503 SlowDown), failing (5xx) and unreachable stores are retried
``remote_retries`` times with exponential backoff and jitter (object_store's own
retries), then answered 503 with Retry-After.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import obstore
from obstore.exceptions import (
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import AzureStore, GCSStore, S3Store

from tilecast.common.errors import (
    RemoteForbidden,
    RemoteNotFound,
    RemoteThrottled,
    RemoteTruncated,
    RemoteUnavailable,
    TilecastError,
)
from tilecast.common.remoteurls import RemoteOptions
from tilecast.common.settings import Settings
from tilecast.workers.remote.objects import ObjectChanged, ObjectClient, ObjectInfo
from tilecast.workers.sources.files import FileTooLarge

log = logging.getLogger(__name__)

STATUS = re.compile(r"(?:status code: |status: )(\d{3})")
THROTTLED = ("SlowDown", "Throttl", "TooManyRequests", "RequestLimitExceeded")
MAX_BACKOFF = timedelta(seconds=5)


class ObstoreClient(ObjectClient):
    def __init__(self, scheme: str, bucket: str, options: RemoteOptions, settings: Settings):
        self.place = f"{scheme}://{bucket}"
        self._store = _store(scheme, bucket, options, settings)

    def head(self, key: str) -> ObjectInfo:
        try:
            meta = obstore.head(self._store, key)
        except Exception as exc:
            raise self._error(exc, key) from None
        last = meta.get("last_modified")
        return ObjectInfo(
            url=f"{self.place}/{key}",
            size=int(meta["size"]),
            etag=meta.get("e_tag"),
            version=meta.get("version"),
            last_modified=last.isoformat() if last is not None else None,
        )

    def get_range(self, key: str, info: ObjectInfo, start: int, end: int) -> bytes:
        try:
            result = obstore.get(
                self._store, key, options={**_conditions(info), "range": (start, end + 1)}
            )
            body = bytes(result.bytes())
        except Exception as exc:
            raise self._error(exc, key) from None
        if len(body) != end - start + 1:
            raise RemoteTruncated(
                f"{self.place} sent {len(body)} of the {end - start + 1} bytes asked for"
            )
        return body

    def get_whole(self, key: str, info: ObjectInfo) -> Iterator[bytes]:
        try:
            result = obstore.get(self._store, key, options=_conditions(info))
            for chunk in result.stream():
                yield bytes(chunk)
        except Exception as exc:
            raise self._error(exc, key) from None

    def get_small(self, key: str, limit: int) -> bytes | None:
        try:
            result = obstore.get(self._store, key)
            if result.meta["size"] > limit:
                raise FileTooLarge(f"{self.place}/{key} is larger than {limit} bytes")
            return bytes(result.bytes())
        except (FileNotFoundError, NotFoundError):
            return None
        except TilecastError:
            raise
        except Exception as exc:
            raise self._error(exc, key) from None

    def _error(self, exc: Exception, key: str) -> Exception:
        """The tilecast error of what the store answered (obstore's exceptions carry
        the status in their text for what they do not classify)."""
        where = f"{self.place}/{key}"
        # The retry configuration is echoed in the text ("retry_timeout: 30s"): not a cause.
        text = re.sub(r"retry_timeout: \S+", "", str(exc))
        match = STATUS.search(text)
        status = int(match[1]) if match else None
        if isinstance(exc, PreconditionError) or status in (412, 416):
            return ObjectChanged(f"{where} changed while it was read; ask again")
        if isinstance(exc, FileNotFoundError | NotFoundError) or status == 404:
            return RemoteNotFound(f"{where} does not exist")
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or status in (401, 403):
            return RemoteForbidden(f"the store refuses tilecast's credentials for {where}")
        if status == 429 or any(word in text for word in THROTTLED):
            log.warning("%s throttled tilecast through every retry", self.place)
            return RemoteThrottled(f"{self.place} is throttling requests; ask again later")
        log.warning("reading %s failed: %s", where, text.splitlines()[0] if text else exc)
        if status is not None:
            return RemoteUnavailable(f"{self.place} answered {status}")
        if "error sending request" not in text and re.search(r"time(d)? ?out", text, re.I):
            return RemoteUnavailable(f"{self.place} timed out")
        if "end of file" in text.lower() or "incomplete" in text.lower():
            return RemoteTruncated(f"{self.place} ended an answer early")
        return RemoteUnavailable(f"{self.place} is unreachable")


def _conditions(info: ObjectInfo) -> dict[str, Any]:
    """Reads of exactly the version that was opened."""
    if info.version:
        return {"version": info.version}
    if info.etag:
        return {"if_match": info.etag}
    return {}


def _store(scheme: str, bucket: str, options: RemoteOptions, settings: Settings) -> Any:
    timeout = timedelta(seconds=settings.remote_timeout)
    client: dict[str, Any] = {"timeout": timeout, "connect_timeout": timeout}
    if options.endpoint_url and options.endpoint_url.startswith("http://"):
        client["allow_http"] = True
    retry: dict[str, Any] = {
        "max_retries": settings.remote_retries,
        "backoff": {
            "init_backoff": timedelta(seconds=settings.remote_backoff),
            "max_backoff": MAX_BACKOFF,
            "base": 2,
        },
        # Bounds a request with its retries: a store that keeps failing is a 503 soon.
        "retry_timeout": timeout * (settings.remote_retries + 1),
    }
    common: dict[str, Any] = {"client_options": client, "retry_config": retry}
    if scheme == "s3":
        return S3Store(bucket, **_s3_options(options), **common)
    if scheme == "gs":
        return GCSStore(bucket, skip_signature=options.anonymous, **common)
    extra = {"endpoint": options.endpoint_url} if options.endpoint_url else {}
    return AzureStore(bucket, skip_signature=options.anonymous, **extra, **common)


def _s3_options(options: RemoteOptions) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if options.endpoint_url:
        found["endpoint"] = options.endpoint_url
        found["virtual_hosted_style_request"] = False  # path style: what S3-compatibles take
    if options.region:
        found["region"] = options.region
    if options.requester_pays:
        found["request_payer"] = True
    if options.anonymous:
        found["skip_signature"] = True
    else:
        provider = _boto3_credentials()
        if provider is not None:
            found["credential_provider"] = provider
    return found


def _boto3_credentials() -> Any:
    """boto3's credential chain (files, profiles, SSO, roles), when boto3 is installed
    and finds credentials; None leaves obstore's own chain (environment, roles)."""
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None
    try:
        return Boto3CredentialProvider()
    except Exception as exc:  # no credentials anywhere boto3 looks
        log.debug("boto3 found no credentials (%s); using obstore's chain", exc)
        return None
