// The index: every registered source with its thumbnail, linking to its viewer.
"use strict";

(() => {
  const THUMBNAIL_WIDTH = 256;

  function card(source) {
    const item = document.createElement("li");
    item.className = "source";
    item.dataset.sourceId = source.id;
    const link = document.createElement("a");
    link.href = tilecast.url(`/viewer/${encodeURIComponent(source.id)}`);
    const image = document.createElement("img");
    image.loading = "lazy";
    image.alt = source.name || source.id;
    image.src = tilecast.url(`/item/${encodeURIComponent(source.id)}/tiles/thumbnail`, {
      width: THUMBNAIL_WIDTH,
    });
    image.addEventListener("error", () => item.classList.add("no-thumbnail"));
    const name = document.createElement("span");
    name.className = "source-name";
    name.textContent = source.name || source.id;
    const id = document.createElement("code");
    id.className = "source-id";
    id.textContent = source.id;
    link.append(image, name, id);
    item.append(link);
    return item;
  }

  async function main() {
    let sources;
    try {
      sources = await tilecast.getJson("/sources");
    } catch (error) {
      tilecast.showMessage(`The sources could not be listed: ${error.message}`);
      return;
    }
    sources.sort((a, b) => String(a.name).localeCompare(String(b.name)));
    document.getElementById("sources").append(...sources.map(card));
    document.getElementById("empty").hidden = sources.length > 0;
    document.body.dataset.loaded = "true";
  }

  main();
})();
