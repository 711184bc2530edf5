// Helpers the pages share: api URLs that carry the page's token, JSON requests whose
// errors keep the api's message, and the message box.
"use strict";

const tilecast = (() => {
  const pageQuery = new URLSearchParams(window.location.search);
  // In girder access mode the page is opened with ?token=...; every request passes it on.
  const token = pageQuery.get("token");
  const apiRoot = document.body.dataset.apiRoot || "";

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `the server answered HTTP ${status}`);
      this.status = status;
      this.code = body && body.error;
    }
  }

  /** An api URL: ``path`` below the api root, ``params`` (empty values left out), the token. */
  function url(path, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
    }
    if (token) query.set("token", token);
    const text = query.toString();
    return apiRoot + path + (text ? `?${text}` : "");
  }

  async function errorOf(response) {
    const body = await response.json().catch(() => null);
    return new ApiError(response.status, body);
  }

  async function getJson(path, params = {}) {
    const response = await fetch(url(path, params), { headers: { Accept: "application/json" } });
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  function showMessage(text) {
    const box = document.getElementById("message");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
  }

  function clearMessage() {
    const box = document.getElementById("message");
    if (!box) return;
    box.textContent = "";
    box.hidden = true;
  }

  // Links between the pages keep the token, so a girder-mode session stays signed in.
  for (const link of document.querySelectorAll("a[data-keep-token]")) {
    if (token) link.href = `${link.getAttribute("href")}?${new URLSearchParams({ token })}`;
  }

  return { token, url, getJson, errorOf, ApiError, showMessage, clearMessage };
})();
