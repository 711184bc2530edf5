"""The browsing model of the time-to-full-view replay (tests/bench/browse_model.py)."""

from __future__ import annotations

from tests.bench.browse_model import HOME, OPEN, PAN, ZOOM_IN, BrowseConfig, sessions
from tests.bench.load_viewer import ImageGeometry
from tests.bench.replay_client import viewer_address

GEOMETRIES = [ImageGeometry.for_image(16384, 12288, 256, 256)]


def test_sessions_are_the_same_for_a_seed_and_differ_between_viewers() -> None:
    first = sessions(7, GEOMETRIES, 4, 20, BrowseConfig())
    again = sessions(7, GEOMETRIES, 4, 20, BrowseConfig())
    assert first == again
    assert all(len(s.views) == 20 for s in first)
    assert len({tuple(v.action for v in s.views) for s in first}) > 1


def test_a_session_opens_dives_then_pans_at_the_region_level() -> None:
    config = BrowseConfig(p_detail=0.0)
    (plan,) = sessions(3, GEOMETRIES, 1, 30, config)
    actions = [v.action for v in plan.views]
    assert actions[0] == OPEN and actions[1] == ZOOM_IN
    assert HOME in actions and PAN in actions
    assert any(
        max(z for z, _x, _y in v.tiles) > max(z for z, _x, _y in b.tiles)
        for b, v in zip(plan.views, plan.views[1:], strict=False)
        if v.action == ZOOM_IN
    )
    # A pan stays at its level: its finest tiles are at the level of the view before it.
    for before, view in zip(plan.views, plan.views[1:], strict=False):
        if view.action == PAN:
            assert max(z for z, _x, _y in view.tiles) == max(z for z, _x, _y in before.tiles)
        if view.action == ZOOM_IN:  # one level finer, or past the base level the same one
            finer = max(z for z, _x, _y in view.tiles) - max(z for z, _x, _y in before.tiles)
            assert finer in (0, 1)
    assert all(config.think_min <= v.think <= config.think_max for v in plan.views)


def test_each_viewer_has_a_loopback_address_of_its_own() -> None:
    addresses = [viewer_address(i) for i in range(600)]
    assert len(set(addresses)) == 600
    assert all(a.startswith("127.") and not a.endswith(".0") for a in addresses)
    assert all(0 < int(a.rsplit(".", 1)[1]) < 255 for a in addresses)
