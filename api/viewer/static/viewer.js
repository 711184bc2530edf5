// The viewer: OpenSeadragon over tilecast's /item/{id}/tiles/zxy tiles, a frame slider,
// style presets and a style box, and the image's metadata.
"use strict";

(() => {
  const page = document.getElementById("viewer-page");
  const itemId = page.dataset.itemId;
  const tilesPath = `/item/${encodeURIComponent(itemId)}/tiles`;
  const pageQuery = new URLSearchParams(window.location.search);
  // What the tiles show; the page URL keeps it (frame, style), so a view can be shared.
  const state = { frame: Number(pageQuery.get("frame")) || 0, style: pageQuery.get("style") };
  let metadata = null;
  let viewer = null;
  // Only the latest style asked for is applied, however its probe and earlier ones race.
  let styleAsked = 0;

  // Keys shown first in the metadata table, in this order; the rest follow.
  const METADATA_ORDER = [
    "sizeX", "sizeY", "levels", "tileWidth", "tileHeight", "bandCount", "dtype",
    "magnification", "mm_x", "mm_y", "frames", "channels",
  ];

  function presets(meta) {
    const rgb = (meta.bandCount || 1) >= 3;
    const inverted = rgb
      ? { bands: [1, 2, 3].map((band, i) => ({
          band, palette: [["#ff0000", "#00ff00", "#0000ff"][i], "#000000"],
        })) }
      : { band: 1, palette: ["#ffffff", "#000000"] };
    return [
      { name: "none", label: "none (as stored)", style: null },
      { name: "gray", label: "band 1, grayscale", style: { band: 1 } },
      { name: "viridis", label: "band 1, viridis, auto range",
        style: { band: 1, palette: "viridis", min: "auto", max: "auto" } },
      { name: "inverted", label: "inverted", style: inverted },
    ];
  }

  function tileUrl(z, x, y, frame, style) {
    const hasFrames = Array.isArray(metadata.frames) && metadata.frames.length > 1;
    return tilecast.url(`${tilesPath}/zxy/${z}/${x}/${y}`, {
      frame: hasFrames ? frame : null,
      style,
    });
  }

  // tilecast's level z = 0 fits the image in one tile and z = levels - 1 is full
  // resolution; OpenSeadragon's levels are offset so that its top level is that one,
  // and none below tilecast's z = 0 is ever asked for.
  function tileSource(meta, frame, style) {
    const levels = meta.levels;
    return {
      width: meta.sizeX,
      height: meta.sizeY,
      tileWidth: meta.tileWidth || 256,
      tileHeight: meta.tileHeight || 256,
      minLevel: 0,
      maxLevel: levels - 1,
      getTileUrl(level, x, y) {
        const z = level - (this.maxLevel - (levels - 1));
        return tileUrl(z, x, y, frame, style);
      },
    };
  }

  function showTiles() {
    const { frame, style } = state;
    const source = tileSource(metadata, frame, style);
    // What the canvas shows now, for people reading the page and for the browser test.
    const shown = () => {
      page.dataset.shownFrame = String(frame);
      page.dataset.shownStyle = style ?? "";
    };
    if (viewer.world.getItemCount() === 0) {
      viewer.addOnceHandler("open", shown);
      viewer.open(source);
    } else {
      // Replacing the tiled image keeps the viewport where the user left it.
      viewer.addTiledImage({ tileSource: source, index: 0, replace: true, success: shown });
    }
    rememberInPageUrl();
  }

  function rememberInPageUrl() {
    const query = new URLSearchParams(window.location.search);
    for (const [name, value] of [["frame", state.frame || null], ["style", state.style]]) {
      if (value === null || value === undefined) query.delete(name);
      else query.set(name, String(value));
    }
    const text = query.toString();
    window.history.replaceState(null, "", window.location.pathname + (text ? `?${text}` : ""));
  }

  /** Apply a typed style: a style the api refuses shows the api's message and the tiles
   * stay as they were. One tile is asked first; the viewer asks for the same tile next,
   * so a good style costs nothing more. */
  async function applyStyle(text) {
    const asked = ++styleAsked;
    let style = null;
    if (text.trim()) {
      try {
        style = JSON.stringify(JSON.parse(text));
      } catch (error) {
        tilecast.showMessage(`The style is not JSON: ${error.message}`);
        return false;
      }
    }
    let probe;
    try {
      probe = await fetch(tileUrl(0, 0, 0, state.frame, style));
    } catch (error) {
      tilecast.showMessage(`The style could not be checked: ${error.message}`);
      return false;
    }
    if (asked !== styleAsked) return false;
    if (!probe.ok) {
      const error = await tilecast.errorOf(probe);
      tilecast.showMessage(`Style refused (${error.status}): ${error.message}`);
      if (probe.status < 500) return false;
    } else {
      tilecast.clearMessage();
    }
    state.style = style;
    showTiles();
    return true;
  }

  function setUpStyles(meta) {
    const select = document.getElementById("preset");
    const box = document.getElementById("style");
    const choices = presets(meta);
    for (const preset of [...choices, { name: "custom", label: "custom (typed below)" }]) {
      select.append(new Option(preset.label, preset.name));
    }
    const current = choices.find((p) => JSON.stringify(p.style) === (state.style ?? "null"));
    select.value = current ? current.name : "custom";
    box.value = state.style ? pretty(state.style) : "";
    select.addEventListener("change", () => {
      const preset = choices.find((p) => p.name === select.value);
      if (!preset) return;
      box.value = preset.style ? JSON.stringify(preset.style, null, 2) : "";
      applyStyle(box.value);
    });
    box.addEventListener("input", () => { select.value = "custom"; });
    document.getElementById("apply-style").addEventListener("click", () => applyStyle(box.value));
  }

  function pretty(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text; // shown as typed; applying it says why it is refused
    }
  }

  function frameLabel(meta, index) {
    const frame = meta.frames[index] || {};
    const channel = frame.Channel
      ?? (Array.isArray(meta.channels) && frame.IndexC !== undefined ? meta.channels[frame.IndexC] : null);
    return channel ? `${index} (${channel})` : String(index);
  }

  function setUpFrames(meta) {
    const count = Array.isArray(meta.frames) ? meta.frames.length : 0;
    if (count < 2) {
      state.frame = 0;
      return;
    }
    const slider = document.getElementById("frame");
    const label = document.getElementById("frame-label");
    state.frame = Math.min(Math.max(0, state.frame), count - 1);
    slider.max = String(count - 1);
    slider.value = String(state.frame);
    label.textContent = frameLabel(meta, state.frame);
    document.getElementById("frame-control").hidden = false;
    slider.addEventListener("input", () => {
      label.textContent = frameLabel(meta, Number(slider.value));
    });
    slider.addEventListener("change", () => {
      state.frame = Number(slider.value);
      showTiles();
    });
  }

  function cellText(key, value) {
    if (key === "frames" && Array.isArray(value)) return `${value.length}`;
    if (Array.isArray(value) && value.every((v) => typeof v !== "object")) return value.join(", ");
    if (value === null || value === undefined) return "—";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function showMetadata(meta) {
    const body = document.querySelector("#metadata tbody");
    const keys = [
      ...METADATA_ORDER.filter((k) => k in meta),
      ...Object.keys(meta).filter((k) => !METADATA_ORDER.includes(k)).sort(),
    ];
    for (const key of keys) {
      const row = body.insertRow();
      row.dataset.key = key;
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = key;
      row.append(name);
      row.insertCell().textContent = cellText(key, meta[key]);
    }
  }

  function makeViewer() {
    const osd = OpenSeadragon({
      element: document.getElementById("viewer"),
      prefixUrl: page.dataset.osdImages,
      // The 2D canvas draws the same pixels on every browser (WebGL may be missing).
      drawer: "canvas",
      showNavigator: true,
      navigatorPosition: "BOTTOM_RIGHT",
      maxZoomPixelRatio: 2,
      visibilityRatio: 0.5,
    });
    osd.addHandler("open-failed", (event) => tilecast.showMessage(`Cannot open: ${event.message}`));
    osd.addHandler("tile-load-failed", (event) => {
      tilecast.showMessage(`A tile did not load: ${event.message || "see the network log"}`);
    });
    osd.addHandler("open", () => { document.body.dataset.ready = "true"; });
    return osd;
  }

  async function main() {
    try {
      metadata = await tilecast.getJson(tilesPath);
    } catch (error) {
      tilecast.showMessage(`The image's metadata could not be read: ${error.message}`);
      return;
    }
    showMetadata(metadata);
    setUpFrames(metadata);
    setUpStyles(metadata);
    viewer = makeViewer();
    // The browser test reaches the viewer here (zoom, canvas pixels).
    window.tilecastViewer = viewer;
    // A style from the page URL is checked like a typed one; refused, the tiles show unstyled.
    if (!state.style || !(await applyStyle(state.style))) {
      state.style = null;
      showTiles();
    }
  }

  main();
})();
