"""One wording per kind of unknown id, whichever route or layer finds out: ``unknown
source 'ID'``, ``unknown job 'ID'``, ``unknown Girder item 'ID'``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask.testing import FlaskClient

from tilecast.api.app import create_app
from tilecast.api.middleware.girder import GirderAuthority
from tilecast.api.services import EXTENSION
from tilecast.common.errors import UnknownJob, UnknownSource
from tilecast.common.jobstore import JobStore
from tilecast.common.registry import SourceRegistry
from tilecast.common.settings import Settings
from tilecast.workers.girder.client import GirderHttpError
from tilecast.workers.girder.items import _item_error

ITEM = "f" * 24
JOB = "nojob0123"


@pytest.fixture
def client(settings: Settings) -> Iterator[FlaskClient]:
    app = create_app(replace(settings, render_timeout=5.0))
    yield app.test_client()
    app.extensions[EXTENSION].listener.stop()


def test_every_route_names_an_unknown_source_alike(client: FlaskClient) -> None:
    answers = [
        client.get(f"/item/{ITEM}/tiles"),
        client.get(f"/item/{ITEM}/tiles/zxy/0/0/0"),
        client.get(f"/item/{ITEM}/tiles/thumbnail"),
        client.get(f"/iiif/{ITEM}/info.json"),
        client.post(f"/item/{ITEM}/tiles/precache"),
        client.delete(f"/sources/{ITEM}"),
    ]
    for answer in answers:
        assert answer.status_code == 404, answer.request.path
        body = answer.get_json()
        assert (body["error"], body["message"]) == ("unknown_source", f"unknown source '{ITEM}'")


def test_every_route_names_an_unknown_job_alike(client: FlaskClient) -> None:
    for answer in (client.get(f"/jobs/{JOB}"), client.delete(f"/jobs/{JOB}")):
        assert answer.status_code == 404
        body = answer.get_json()
        assert (body["error"], body["message"]) == ("unknown_job", f"unknown job '{JOB}'")


def test_the_state_and_the_workers_use_the_same_words(state: redis.Redis) -> None:
    with pytest.raises(UnknownSource, match=f"^unknown source '{ITEM}'$"):
        SourceRegistry(state).get(ITEM)
    with pytest.raises(UnknownSource, match=f"^unknown source '{ITEM}'$"):
        SourceRegistry(state).bump_generation(ITEM)
    with pytest.raises(UnknownJob, match=f"^unknown job '{JOB}'$"):
        JobStore(state).get(JOB)


def test_girder_items_have_their_own_wording() -> None:
    settings = Settings(access_mode="girder", girder_url="http://127.0.0.1:9/api/v1").resolved()
    with pytest.raises(UnknownSource, match=r"^unknown Girder item 'not-an-id'$"):
        GirderAuthority(settings).check_read("not-an-id", None)
    refused = _item_error(ITEM, GirderHttpError(400, "Invalid item id"))
    assert isinstance(refused, UnknownSource)
    assert refused.message == f"unknown Girder item '{ITEM}'"
