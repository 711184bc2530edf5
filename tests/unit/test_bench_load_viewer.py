"""The simulated viewer of the load test (tests/bench/load_viewer.py): pure geometry."""

from __future__ import annotations

import random
from collections import Counter

from tests.bench.load_viewer import ImageGeometry, View, Viewer, ViewerConfig, popularity

BIG = ImageGeometry(size_x=16384, size_y=12288, levels=7, tile_width=256, tile_height=256)
ODD = ImageGeometry(size_x=6000, size_y=4000, levels=6, tile_width=256, tile_height=256)


def steps(seed: int, count: int, geometries: list[ImageGeometry]) -> list[tuple]:
    viewer = Viewer(seed, geometries)
    out = []
    for _ in range(count):
        step = viewer.next_step()
        out.append((step.image, tuple(step.tiles), step.think, step.opens, step.action))
    return out


def test_same_seed_same_steps_other_seed_other_steps() -> None:
    assert steps(5, 60, [BIG, ODD]) == steps(5, 60, [BIG, ODD])
    assert steps(5, 60, [BIG, ODD]) != steps(6, 60, [BIG, ODD])


def test_level_for_zoom() -> None:
    assert BIG.target_level(1.0) == 6  # one base pixel per screen pixel: the base level
    assert BIG.target_level(0.5) == 6  # zoomed past the base: still the base level
    assert BIG.target_level(1.99) == 6
    assert BIG.target_level(2.0) == 5
    assert BIG.target_level(13.65) == 3
    assert BIG.target_level(10**6) == 0


def test_tile_counts_match_the_level_sizes() -> None:
    assert BIG.tiles_at(6) == (64, 48)
    assert BIG.tiles_at(0) == (1, 1)
    assert ODD.tiles_at(5) == (24, 16)  # 6000/256 = 23.4, 4000/256 = 15.6
    assert ODD.tiles_at(4) == (12, 8)  # 3000 x 2000


def test_home_view_shows_every_tile_of_its_level_coarse_first() -> None:
    config = ViewerConfig()
    view = View.home(BIG, config)
    assert view.level == 3  # 16384 / 1600 = 10.2, 12288 / 900 = 13.7: 8x coarser
    tiles = view.tiles(config)
    levels = [z for z, _, _ in tiles]
    assert levels == sorted(levels)  # coarse levels first
    assert tiles[0] == (0, 0, 0)
    per_level = Counter(levels)
    for z in range(4):
        nx, ny = BIG.tiles_at(z)
        assert per_level[z] == nx * ny  # the whole image is in view


def test_a_view_is_about_seven_by_four_tiles_nearest_the_centre_first() -> None:
    config = ViewerConfig(margin=0)
    view = View(BIG, cx=8000.0, cy=6000.0, bpp=1.0, home_bpp=13.65)
    base = [t for t in view.tiles(config) if t[0] == 6]
    xs = {x for _, x, _ in base}
    ys = {y for _, _, y in base}
    assert 7 <= len(xs) <= 8 and 4 <= len(ys) <= 5
    assert len(base) == len(xs) * len(ys)
    # The first tile holds the centre.
    assert base[0] == (6, 8000 // 256, 6000 // 256)


def test_tiles_stay_in_range_and_are_never_asked_twice() -> None:
    viewer = Viewer(11, [BIG, ODD])
    seen: set[tuple[int, tuple[int, int, int]]] = set()
    for _ in range(400):
        step = viewer.next_step()
        geometry = [BIG, ODD][step.image]
        for tile in step.tiles:
            z, x, y = tile
            nx, ny = geometry.tiles_at(z)
            assert 0 <= z < geometry.levels and 0 <= x < nx and 0 <= y < ny
            assert (step.image, tile) not in seen
            seen.add((step.image, tile))


def test_zoom_stays_between_home_and_the_base_level() -> None:
    config = ViewerConfig()
    rng = random.Random(3)
    view = View.home(ODD, config)
    actions = Counter()
    for _ in range(500):
        actions[view.move(rng, config)] += 1
        assert 1.0 <= view.bpp <= view.home_bpp
        assert 0 <= view.cx <= ODD.size_x and 0 <= view.cy <= ODD.size_y
    assert set(actions) == {"pan", "zoom in", "zoom out"}


def test_popular_images_are_opened_more() -> None:
    weights = popularity(8, 1.0)
    assert weights == sorted(weights, reverse=True)
    opened: Counter[int] = Counter()
    for seed in range(200):
        viewer = Viewer(seed, [BIG] * 8)
        for _ in range(60):
            step = viewer.next_step()
            if step.opens:
                opened[step.image] += 1
    assert opened[0] > opened[3] > opened[7] > 0
