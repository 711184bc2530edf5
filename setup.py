"""The one build step pyproject.toml cannot say: OpenSeadragon for the viewer.

Everything else about the package is in pyproject.toml. Building (``pip install .``,
``pip install -e .``, ``python -m build``) fetches the pinned, integrity-checked npm
tarball into api/viewer/static/openseadragon/ before the package data is collected,
so wheels ship it; see api/viewer/assets.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def viewer_assets() -> ModuleType:
    # Loaded by path: the build environment has setuptools, not tilecast's dependencies.
    spec = importlib.util.spec_from_file_location(
        "tilecast_viewer_assets", HERE / "api" / "viewer" / "assets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithViewerAssets(build_py):
    def run(self) -> None:
        assets = viewer_assets()
        try:
            assets.ensure()
        except assets.AssetError as exc:
            # An offline build still installs; the viewer page then answers 503 naming the fix.
            self.warn(f"OpenSeadragon for the viewer was not fetched: {exc}")
        # The package data may have been listed before the files existed.
        self.__dict__.pop("data_files", None)
        super().run()


setup(cmdclass={"build_py": BuildPyWithViewerAssets})
