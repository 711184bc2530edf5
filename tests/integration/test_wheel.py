"""The built wheels install under their own names only.

``pip install .`` must not drop ``api``, ``common`` or ``workers`` into site-packages,
where they would collide with other projects: tilecast installs as ``tilecast`` and the
Girder plugin as ``tilecast_girder``, nothing else at the top level.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

PLUGIN = REPO / "deploy" / "girder-plugin"


def build_wheel(project: Path, out: Path) -> Path:
    """A wheel of ``project`` built as pip builds it for users: in an isolated environment."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(project)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = [p for p in out.glob("*.whl") if p.name.startswith(project_name(project))]
    return wheel


def project_name(project: Path) -> str:
    return "tilecast_girder" if project.name == PLUGIN.name else "tilecast-"


def site_packages(env: Path) -> Path:
    (found,) = env.glob("lib/python*/site-packages")
    return found


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    # Built from a copy: setuptools leaves build/ behind in the tree it builds, and files
    # left there by an older build would end up in the next wheel.
    source = tmp_path_factory.mktemp("source") / "tilecast"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO, source, symlinks=True, ignore=skip)
    out = tmp_path_factory.mktemp("wheels")
    return [build_wheel(source, out), build_wheel(source / "deploy" / "girder-plugin", out)]


def test_only_tilecast_lands_at_the_top_level(
    wheels: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = tmp_path_factory.mktemp("clean") / "venv"
    venv.create(env, with_pip=True)
    before = set(os.listdir(site_packages(env)))
    python = env / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", *map(str, wheels)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=env,
    )
    assert done.returncode == 0, done.stderr
    added = set(os.listdir(site_packages(env))) - before
    top_level = {name for name in added if not name.endswith(".dist-info")}
    assert top_level == {"tilecast", "tilecast_girder"}
    package = site_packages(env) / "tilecast"
    # Symlinked in the source tree, real folders in the wheel.
    for part in ("api", "common", "workers"):
        assert (package / part / "__init__.py").is_file()
        assert not (package / part).is_symlink()
    assert (package / "api" / "viewer" / "templates" / "tilecast").is_dir()
    assert (package / "common" / "palette_names.txt").is_file()


def test_the_installed_package_imports_from_where_it_was_installed(
    wheels: list[Path], tmp_path: Path
) -> None:
    """Run away from the checkout, the wheel's own modules load: api, workers and the CLI."""
    target = tmp_path / "target"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            *[str(wheels[0])],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    code = (
        "import tilecast.api.app, tilecast.workers.tasks, tilecast.cli\n"
        "for m in (tilecast.api.app, tilecast.workers.tasks, tilecast.cli):\n"
        "    print(m.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert loaded.returncode == 0, loaded.stderr
    files = loaded.stdout.split()
    assert len(files) == 3
    assert all(Path(f).is_relative_to(target) for f in files), files
