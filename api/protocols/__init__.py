"""The standard tile protocols other viewers speak (Deep Zoom, IIIF Image API, TileJSON):
their geometry, documents and routes, all answered through tilecast's own paths."""
