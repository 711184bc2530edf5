"""Benchmark 10's bookkeeping (tests/bench/bench_urls.py) and the S3 server's direct
ranged answers it relies on (tests/remoteservers.py): the same bytes and headers a
client reads from moto itself, and moto's own answer whenever a condition fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bench.bench_urls import VIEWPORT, Cost, Samples, pick_tiles, section, viewport
from tests.bench.remote_setup import RemoteImage
from tests.remoteservers import s3_serving


def test_viewports_are_distinct_blocks_of_native_tiles() -> None:
    tiles = pick_tiles()
    seen: set[tuple[int, int, int]] = set()
    for number in range(12):
        block = viewport(tiles, number)
        assert len(block) == VIEWPORT * VIEWPORT
        assert all(z == tiles.top and 0 <= x < tiles.across and 0 <= y < tiles.down
                   for z, x, y in block)  # fmt: skip
        assert not seen & set(block)
        seen |= set(block)
    assert tiles.native not in seen


def test_the_section_reports_every_measure(tmp_path: Path) -> None:
    samples = Samples()
    for kind in ("http", "s3"):
        samples.add(f"{kind}:range:first", Cost(0.25, 8, 3_830_000))
        samples.add(f"{kind}:range:overview", Cost(0.001, 0, 0))
        samples.add(f"{kind}:range:distant", Cost(0.025, 1, 262_144))
        samples.add(f"{kind}:download:first", Cost(4.5, 3, 1_095_400_224))
        samples.add(f"{kind}:viewport", Cost(0.25, 14, 3_930_000))
    samples.add("local:range:first", Cost(0.018, 0, 0))
    samples.add("local:viewport", Cost(0.0064, 0, 0))
    image = RemoteImage(tmp_path / "slide.tiff", 1_095_400_224, None)
    text = section(image, 1, 1, samples, 50.0, "DICOMweb: not measured.", 60.0).markdown()
    first = "| first native tile, read by range (DICOMweb: frame): latency"
    assert f"{first} | 18.0 (18.0-18.0) ms | 250" in text
    assert "3 requests, 1,095 MB" in text and "8 requests, 3.83 MB" in text
    assert "| 10,000 (10,000-10,000) | 256 (256-256) | 256 (256-256) | -- |" in text
    assert "| first native tile after downloading the whole file: latency | -- | 4500" in text
    assert "(18x)" in text and "DICOMweb: not measured" in text


def test_direct_ranges_answer_as_moto_does(tmp_path: Path) -> None:
    import boto3
    from botocore.exceptions import ClientError

    (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 1000)
    with s3_serving(tmp_path, "bucket", "p") as server:
        client = boto3.client("s3", endpoint_url=server.url)

        def get(**options: str) -> dict[str, Any]:
            return client.get_object(Bucket="bucket", Key="p/a.bin", Range="bytes=1000-1999",
                                     **options)  # fmt: skip

        moto = get()
        server.direct_ranges = True
        mark = server.log.mark()
        direct = get()
        assert direct["Body"].read() == moto["Body"].read() == (bytes(range(256)) * 1000)[1000:2000]
        for name in ("ContentRange", "ETag", "LastModified", "ContentLength"):
            assert direct[name] == moto[name]
        assert [r.status for r in server.log.since(mark)] == [206]
        with pytest.raises(ClientError, match=r"PreconditionFailed|412"):
            get(IfMatch='"other"')  # moto's own answer
        with pytest.raises(ClientError, match="NoSuchKey"):
            client.get_object(Bucket="bucket", Key="p/none", Range="bytes=0-1")
