"""A registration keeps its file's identity and generation; a worker opening the file
of an older generation, or another file, registers the file anew (real Redis, real files)."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from tilecast.common.errors import SourceChanged, SourceGone
from tilecast.common.fileidentity import same_file, stat_identity
from tilecast.common.registry import SourceRecord
from tilecast.workers.describe import describe_file
from tilecast.workers.engine import Renderer
from tilecast.workers.filechanges import open_registered, refresh_if_changed


def register(renderer: Renderer, path: Path) -> SourceRecord:
    described = describe_file(str(path), renderer.settings)
    record = SourceRecord(
        uuid.uuid4().hex[:24], str(path), path.name, described.metadata, identity=described.identity
    )
    renderer.registry.register(record)
    return renderer.registry.get(record.id)


def test_identities_compare_all_but_the_device(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    identity = stat_identity(str(path))
    assert identity is not None and same_file(identity, {**identity, "dev": -1})
    assert not same_file(identity, {**identity, "size": 2})
    assert stat_identity(str(tmp_path / "absent")) is None
    assert same_file(None, None) and not same_file(identity, None)


def test_replace_if_stores_once_and_never_brings_a_removed_record_back(
    renderer: Renderer, images: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "a.tiff"
    shutil.copyfile(images["pyramid"], path)
    record = register(renderer, path)
    assert record.generation == 1 and record.identity is not None
    registry = renderer.registry
    assert registry.replace_if(replace(record, name="b"), expect=1) == (True, 2)
    assert registry.replace_if(replace(record, name="c"), expect=1) == (False, 2)
    assert registry.get(record.id).name == "b" and registry.get(record.id).generation == 2
    assert registry.remove(record.id)
    assert registry.replace_if(record, expect=3)[0] is False
    assert not registry.exists(record.id)


def test_a_renamed_over_file_is_registered_anew(
    renderer: Renderer, images: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "a.tiff"
    shutil.copyfile(images["pyramid"], path)
    record = register(renderer, path)
    opened = open_registered(renderer.registry, record.id, 1, renderer.settings)
    opened.source.close()
    assert refresh_if_changed(renderer.registry, record, renderer.settings) is None

    staged = tmp_path / "b.tiff"
    shutil.copyfile(images["png"], staged)
    os.replace(staged, path)
    with pytest.raises(SourceChanged):
        open_registered(renderer.registry, record.id, 1, renderer.settings)
    fresh = renderer.registry.get(record.id)
    assert fresh.generation == 2 and fresh.metadata != record.metadata
    assert same_file(fresh.identity, stat_identity(str(path)))
    with pytest.raises(SourceChanged):  # generation 1 is never read again
        open_registered(renderer.registry, record.id, 1, renderer.settings)
    opened = open_registered(renderer.registry, record.id, 2, renderer.settings)
    assert opened.source.metadata == fresh.metadata
    opened.source.close()

    path.unlink()
    assert isinstance(refresh_if_changed(renderer.registry, fresh, renderer.settings), SourceGone)
    with pytest.raises(SourceGone, match="deleted"):
        open_registered(renderer.registry, record.id, 3, renderer.settings)
    gone = renderer.registry.get(record.id)
    shutil.copyfile(images["pyramid"], path)  # back: noticed, described again
    assert isinstance(refresh_if_changed(renderer.registry, gone, renderer.settings), SourceChanged)
    assert renderer.registry.get(record.id).unreadable is None
