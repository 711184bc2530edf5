"""Names of the whole-image band statistics that styles need (``auto``, ``min``,
``max``, ``min:T`` ...), shared by every worker process through the cache Redis.

One entry per (source, generation, frame, kind) holds every band's numbers: they all
come from one read of the same low-resolution overview, and large_image's ``auto``
rule looks at all bands at once. The generation is part of the key, so bumping a
source's generation retires its statistics with its tiles; like tiles they carry the
tile TTL and may be evicted (they are recomputed on demand).
"""

from __future__ import annotations

from tilecast.common.keys import cache_key

KIND_BANDSTATS = "bandstats"
# large_image's ``_scanForMinMax(analysisSize=1024)``: the overview fits in 1024 x 1024.
ANALYSIS_SIZE = 1024
MINMAX = "minmax"  # per band min and max
HISTOGRAM = "histogram"  # min, max and a 256-bin histogram per band (thresholds)


def band_stats_key(source: str, generation: int, frame: int, kind: str) -> str:
    """``tc:bandstats:{source}:{generation}:{frame}:overview:1024:0:{kind}:json``."""
    if kind not in (MINMAX, HISTOGRAM):
        raise ValueError(f"unknown band statistics kind {kind!r}")
    return cache_key(
        KIND_BANDSTATS, source, generation, frame, "overview", ANALYSIS_SIZE, 0, kind, "json"
    )
