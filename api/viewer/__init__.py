"""The browser pages the api serves: an index of the registered sources and an
OpenSeadragon viewer per source. Plain HTML, CSS and JS shipped as package data;
OpenSeadragon itself comes from its npm package at build time (api/viewer/assets.py)."""
