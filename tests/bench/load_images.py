"""The images of the load test: a lab's mix of pyramidal and single-level slides.

Generated once with ``tilecast.sample`` (libvips, streamed to disk) into the benchmark
image folder and reused by later runs. The two 16384x12288 images are the runner's own
pair (``BenchContext.pyramid`` / ``.single``); the other six are made here. The order is
the popularity ranking the simulated viewers use: the first is the most viewed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.bench.harness import BenchContext


@dataclass(frozen=True)
class LoadImage:
    width: int
    height: int
    pyramid: bool

    @property
    def kind(self) -> str:
        return "pyramid" if self.pyramid else "single"

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height} {self.kind}"

    def filename(self) -> str:
        return f"load-{self.width}x{self.height}-{self.kind}.tiff"


# Popularity order. None of the extra sizes is a multiple of the tile size, as in life.
RUNNER_PYRAMID = LoadImage(16384, 12288, True)
RUNNER_SINGLE = LoadImage(16384, 12288, False)
LOAD_IMAGES: tuple[LoadImage, ...] = (
    RUNNER_PYRAMID,
    LoadImage(12000, 9000, True),
    RUNNER_SINGLE,
    LoadImage(20000, 15000, True),
    LoadImage(8000, 6000, False),
    LoadImage(15000, 11000, True),
    LoadImage(6000, 4000, False),
    LoadImage(10000, 8000, True),
)


def load_image_paths(ctx: BenchContext, count: int = len(LOAD_IMAGES)) -> list[Path]:
    """The first ``count`` images of :data:`LOAD_IMAGES`, generated when missing."""
    paths: list[Path] = []
    folder = ctx.image_dir / "load"
    for spec in LOAD_IMAGES[:count]:
        if spec == RUNNER_PYRAMID:
            paths.append(ctx.pyramid)
        elif spec == RUNNER_SINGLE:
            paths.append(ctx.single)
        else:
            paths.append(make_load_image(folder, spec))
    return paths


def make_load_image(folder: Path, spec: LoadImage) -> Path:
    # pyvips only where images are made: the load generator itself does not need it.
    from tilecast.sample import sample_image, write_tiff

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename()
    if not path.exists():
        print(f"  generating {path}", flush=True)
        partial = path.with_suffix(".partial.tiff")
        image = sample_image(spec.width, spec.height)
        write_tiff(image, partial, pyramid=spec.pyramid, pixels_per_mm=4000, bigtiff=True)
        partial.rename(path)  # an interrupted run leaves no half-written image behind
    return path
