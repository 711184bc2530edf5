"""The raw WSGI hit path: full-resolution tile GETs answered from Redis without Flask.

It sits in front of the Flask app and answers only what it can decide in one pass over
``PATH_INFO`` and ``QUERY_STRING`` and one Redis round trip -- a plain tile URL
(``/item/{id}/tiles/zxy/...``, ``.../fzxy/...``, both also under ``/api/v1``), no query
or only ``gen``, a hit -- with the same status, body and headers the Flask path would
send; everything else (misses, errors, other parameters, HEAD, other access modes) goes
to Flask unchanged. :mod:`.shapes` reads the URL, :mod:`.answer` answers.
"""
