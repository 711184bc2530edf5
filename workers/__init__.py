"""The worker side: Celery tasks and the rendering engine (never imports Flask or api).

- ``celeryapp`` / ``tasks`` / ``jobs``: the Celery app and the tasks of docs/CONTRACT.md
  (``common/taskprotocol.py`` names them).
- ``engine``: the per-process ``Renderer`` (sources, caches, style, encode).
- ``describe``: opening a record's path (a local file or ``girder://item/{id}``) and
  ``describe_path(path)``, large_image-shaped metadata of a file.
- ``sources/``: the reader interface and readers (TIFF pyramids, anything libvips opens),
  which read an ``ImageFile`` (``sources/files.py``: local, or any positioned reads).
- ``girder/``: Girder items' image files, read in place, by HTTP ranges or downloaded.
- ``rawtile``: the unstyled tile and its lossless cache form.
- ``synthesis``: cache -> native read -> synthesis from the level above.
- ``sourcecache``: the LRU of opened (unstyled and styled) sources.
- ``style`` / ``encode`` / ``thumbnail``: pixels for clients, large_image's semantics.
"""
