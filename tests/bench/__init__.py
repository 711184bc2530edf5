"""tilecast's benchmarks: not part of the test suite; ``python -m tests.bench.run``.

See docs/BENCHMARKS.md (written by that command) for what each one measures.
"""
