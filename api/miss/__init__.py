"""The one hit and miss path: answering from the cache, single-flight dispatch of misses to
the worker queues, waiting for completions, source generations, prefetch."""
