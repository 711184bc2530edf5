"""Local paths confined to their roots; settings read from an environment mapping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tilecast.common.errors import ConfigurationError, SourceRefused
from tilecast.common.localpaths import resolve_under_roots, source_id_for_path
from tilecast.common.settings import DEFAULT_REDIS_URL, Settings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "a.tiff").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.tiff").write_bytes(b"x")
    return tmp_path / "root"


def test_inside_root(root: Path) -> None:
    real = resolve_under_roots(str(root / "sub" / ".." / "sub" / "a.tiff"), (str(root),))
    assert real == os.path.realpath(root / "sub" / "a.tiff")
    assert source_id_for_path(real) == source_id_for_path(real)
    assert len(source_id_for_path(real)) == 24


@pytest.mark.parametrize(
    "relative",
    ["../elsewhere/b.tiff", "sub/missing.tiff", "link-out.tiff", "", "sub/a.tiff\x00", "fifo"],
)
def test_refused(root: Path, relative: str) -> None:
    (root / "link-out.tiff").symlink_to(root.parent / "elsewhere" / "b.tiff")
    os.mkfifo(root / "fifo")
    path = str(root / relative) if relative else ""
    with pytest.raises(SourceRefused) as caught:
        resolve_under_roots(path, (str(root),))
    assert caught.value.parameter == "path" and caught.value.status == 400


def test_a_directory_inside_a_root_is_a_source(root: Path) -> None:
    # An OME-Zarr store or a DICOM series is one image; its reader decides.
    assert resolve_under_roots(str(root / "sub"), (str(root),)) == os.path.realpath(root / "sub")


def test_prefix_of_root_is_not_inside(tmp_path: Path) -> None:
    (tmp_path / "root2").mkdir()
    (tmp_path / "root2" / "c.tiff").write_bytes(b"x")
    with pytest.raises(SourceRefused):
        resolve_under_roots(str(tmp_path / "root2" / "c.tiff"), (str(tmp_path / "root"),))


def test_no_roots_refuses_everything(root: Path) -> None:
    with pytest.raises(SourceRefused, match="no source roots"):
        resolve_under_roots(str(root / "sub" / "a.tiff"), ())


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "TILECAST_CACHE_URL": "redis://h:1/0",
            "TILECAST_SOURCE_ROOTS": f"/a{os.pathsep}/b",
            "TILECAST_RENDER_TIMEOUT": "2.5",
            "TILECAST_HTTP_MAX_AGE": "60",
            "UNRELATED": "x",
        }
    )
    assert settings.cache_url == settings.state_url == settings.broker_url == "redis://h:1/0"
    assert settings.source_roots == ("/a", "/b")
    assert settings.render_timeout == 2.5 and settings.http_max_age == 60


def test_settings_defaults_and_errors() -> None:
    settings = Settings.from_env({})
    assert settings.cache_url == DEFAULT_REDIS_URL and settings.broker_url == DEFAULT_REDIS_URL
    separate = Settings.from_env({"TILECAST_STATE_URL": "redis://s:2/0"})
    assert separate.broker_url == "redis://s:2/0" and separate.cache_url == DEFAULT_REDIS_URL
    with pytest.raises(ConfigurationError):
        Settings.from_env({"TILECAST_INFLIGHT_TTL": "soon"})
