"""The worker side: Celery tasks and the rendering engine (never imports Flask or api).

- ``celeryapp`` / ``tasks``: the Celery app and the three tasks of docs/CONTRACT.md.
- ``engine``: the per-process ``Renderer`` (sources, caches, style, encode).
- ``describe``: ``describe_path(path)``, large_image-shaped metadata of a file.
- ``sources/``: the reader interface and readers (TIFF pyramids, anything libvips opens).
- ``rawtile``: the unstyled tile and its lossless cache form.
- ``synthesis``: cache -> native read -> synthesis from the level above.
- ``sourcecache``: the LRU of opened (unstyled and styled) sources.
- ``style`` / ``encode`` / ``thumbnail``: pixels for clients, large_image's semantics.
"""
