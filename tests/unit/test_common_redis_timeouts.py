"""Redis socket timeouts come from the settings, are not retried on timeout, and a
URL's own options still win for one role (common/redisconn.py)."""

from __future__ import annotations

import pytest

from tilecast.common.errors import ConfigurationError
from tilecast.common.redisconn import connect, connect_cache
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import make_celery


def pool_options(client: object) -> dict[str, object]:
    return client.connection_pool.connection_kwargs  # type: ignore[attr-defined, no-any-return]


def test_settings_timeouts_reach_every_client() -> None:
    settings = Settings.from_env(
        {"TILECAST_REDIS_TIMEOUT": "0.75", "TILECAST_REDIS_CONNECT_TIMEOUT": "0.25"}
    )
    for client in (
        connect("redis://127.0.0.1:1/0", **settings.redis_timeouts),
        connect_cache("redis://127.0.0.1:1/0", **settings.redis_timeouts),
    ):
        options = pool_options(client)
        assert options["socket_timeout"] == 0.75
        assert options["socket_connect_timeout"] == 0.25
        assert options["retry_on_timeout"] is False
    transport = make_celery(settings).conf.broker_transport_options
    assert (transport["socket_timeout"], transport["socket_connect_timeout"]) == (0.75, 0.25)


def test_a_url_option_wins_for_its_role() -> None:
    client = connect("redis://127.0.0.1:1/0?socket_timeout=3", timeout=0.5)
    assert pool_options(client)["socket_timeout"] == 3


@pytest.mark.parametrize(
    "name", ["TILECAST_REDIS_TIMEOUT", "TILECAST_REDIS_CONNECT_TIMEOUT", "TILECAST_READYZ_TIMEOUT"]
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_timeouts_must_be_positive(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({name: value})
