"""URL sources (``s3://``, ``gs://``, ``az://``, ``http(s)://``) and what every remote file
shares: the block cache, ranged reads, blocks shared through Redis, the download cache
(Girder files use the same, workers/girder/). See docs/REMOTE.md."""
