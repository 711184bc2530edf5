// Helpers the pages share: api URLs that carry the page's token, JSON requests whose
// errors keep the api's message, and the message box.
"use strict";

const tilecast = (() => {
  const pageQuery = new URLSearchParams(window.location.search);
  // In girder access mode the page is opened with ?token=..., in signed mode with a signed
  // grant (?prefix=...&expires=...&keyid=...&signature=...): every request passes them on.
  const token = pageQuery.get("token");
  const CREDENTIALS = ["token", "prefix", "expires", "keyid", "signature"];
  const credentials = CREDENTIALS.filter((name) => pageQuery.get(name))
    .map((name) => [name, pageQuery.get(name)]);
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
    for (const [name, value] of credentials) query.set(name, value);
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

  // Links between the pages keep the credentials, so a session stays signed in.
  for (const link of document.querySelectorAll("a[data-keep-token]")) {
    if (credentials.length) {
      link.href = `${link.getAttribute("href")}?${new URLSearchParams(credentials)}`;
    }
  }

  return { token, url, getJson, errorOf, ApiError, showMessage, clearMessage };
})();
