"""Optional per-client rate limiting: a token bucket per client in the state Redis.

``TILECAST_RATE_LIMIT`` requests per second per client (0: off, and then no hook is
registered, so a cache hit stays one Redis round trip), with bursts of
``TILECAST_RATE_LIMIT_BURST``. Over it: 429 with ``Retry-After``.

The bucket lives in the state Redis (one ``EVALSHA`` of a Lua script: read, refill,
take, write, atomically, timed by Redis' own clock) rather than in each process,
because api processes sit behind a load balancer that spreads one client over all of
them: a per-process bucket would let a client through N times the limit. The cost is
one extra round trip per request while limiting is on.

The client is who the access check verified: the signed grant's signature (one signed
URL handed out, one client) or the Girder token, else the remote address. The address
is taken from ``X-Forwarded-For`` only when the peer is one of
``TILECAST_TRUSTED_PROXIES`` (addresses or networks): the right-most address not
itself a trusted proxy, which a client cannot forge by sending its own header. The
check runs after the access check, so a made-up credential cannot pick a fresh bucket.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Sequence

import redis
from flask import Flask, Request, g, request

from tilecast.api.middleware.access import credentials
from tilecast.common.errors import ConfigurationError, RateLimited
from tilecast.common.keys import ratelimit_key
from tilecast.common.settings import Settings

# Probes must not be starved by (or count against) clients.
UNLIMITED_ENDPOINTS = frozenset({"health.healthz", "health.readyz"})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# KEYS[1] the bucket; ARGV rate (tokens/s), burst. Returns {allowed, seconds to wait}.
# Fractions travel as strings: Lua numbers returned to Redis become integers.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or burst
local at = tonumber(saved[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
if wait > 0 then return {0, tostring(wait)} end
return {1, '0'}
"""


def parse_proxies(text: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(p.strip()) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigurationError(f"TILECAST_TRUSTED_PROXIES: {exc}") from None


def client_address(req: Request, proxies: Sequence[Network]) -> str:
    """The peer, or behind trusted proxies the right-most untrusted forwarded address."""
    hops = [req.remote_addr or ""]
    if proxies:
        forwarded = req.headers.getlist("X-Forwarded-For")
        hops = [h.strip() for line in forwarded for h in line.split(",")] + hops
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0]


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_id(req: Request, proxies: Sequence[Network]) -> str:
    signed = g.get("signed_client")  # api/middleware/signed.py: the verified grant's signature
    if signed is not None:
        return "signature:" + signed
    token = credentials(req)
    return ("token:" + token) if token else ("address:" + client_address(req, proxies))


class RateLimiter:
    def __init__(self, state: redis.Redis, rate: float, burst: int) -> None:
        if burst < 0:
            raise ConfigurationError(
                f"TILECAST_RATE_LIMIT_BURST={burst}: 0 (twice the rate) or more"
            )
        self.rate = rate
        self.burst = burst or max(1, math.ceil(2 * rate))
        self.script = state.register_script(TOKEN_BUCKET)

    def take(self, client: str) -> None:
        """Take one token of ``client``'s bucket, or raise RateLimited."""
        # Hashed: tokens and signatures must not sit in Redis key names.
        key = ratelimit_key(hashlib.sha256(client.encode()).hexdigest()[:32])
        allowed, wait = self.script(keys=[key], args=[self.rate, self.burst])
        if not int(allowed):
            seconds = max(1, math.ceil(float(wait)))
            raise RateLimited(
                f"more than {self.rate:g} requests per second: retry in {seconds} s",
                retry_after=seconds,
            )


def install(app: Flask, settings: Settings, state: redis.Redis) -> None:
    if settings.rate_limit <= 0:
        return
    limiter = RateLimiter(state, settings.rate_limit, settings.rate_limit_burst)
    proxies = parse_proxies(settings.trusted_proxies)

    @app.before_request
    def limit_rate() -> None:
        if request.endpoint is None or request.endpoint in UNLIMITED_ENDPOINTS:
            return
        limiter.take(client_id(request, proxies))
