// A broken image shows its domain instead of the browser's broken-image icon.
// 'error' does not bubble, so listen in the capture phase; no inline handlers (CSP).
document.addEventListener("error", (event) => {
  const img = event.target;
  if (img instanceof HTMLImageElement) {
    img.closest(".frame")?.classList.add("broken");
  }
}, true);

// Images that failed before this deferred script ran.
for (const img of document.querySelectorAll(".frame img")) {
  if (img.complete && img.naturalWidth === 0) {
    img.closest(".frame").classList.add("broken");
  }
}

// Search as you type: the page fetches itself for the new query and swaps in its
// results and facets. Without JavaScript the form submits as before; with it, the URL
// still carries the whole search (bookmarkable, the back button works).
const form = document.getElementById("search");
const box = form?.querySelector('input[name="q"]');
const main = document.getElementById("main");
const DEBOUNCE_MS = 150;
const NEW_ENTRY_AFTER_MS = 1500; // a pause this long starts a new history entry

function markBroken(root) {
  for (const img of root.querySelectorAll(".frame img")) {
    if (img.complete && img.naturalWidth === 0) {
      img.closest(".frame").classList.add("broken");
    }
  }
}

if (form && box && main) {
  let timer = 0;
  let issued = 0; // requests made
  let shown = 0; // the newest request whose answer is on screen
  let inflight = null;
  let lastChange = 0;

  const urlFor = () => {
    const params = new URLSearchParams(new FormData(form));
    for (const [key, value] of [...params]) {
      if (!value) params.delete(key);
    }
    const query = params.toString();
    return query ? `/?${query}` : "/";
  };

  async function load(url, historyMode) {
    const id = ++issued;
    inflight?.abort(); // the server stops working on an answer nobody will read
    const controller = new AbortController();
    inflight = controller;
    let html;
    let status = 0;
    try {
      const response = await fetch(url, { signal: controller.signal, headers: { Accept: "text/html" } });
      status = response.status;
      html = await response.text();
    } catch {
      if (controller.signal.aborted) return; // a newer request replaced it
      html = ""; // offline, or the server went away: say so below
    }
    if (id < shown || id !== issued) return; // an older answer never replaces a newer one
    shown = id;
    const doc = new DOMParser().parseFromString(html, "text/html");
    const fresh = doc.getElementById("main");
    if (!fresh) {
      // Not the page (a proxy's error, a server gone): never the old results under the
      // new words.
      const line = document.createElement("p");
      line.className = "error";
      line.textContent = status ? `search failed (HTTP ${status})` : "search failed: no answer from the server";
      main.replaceChildren(line);
      return;
    }
    main.replaceChildren(...[...fresh.childNodes].map((n) => document.importNode(n, true)));
    document.title = doc.title;
    if (historyMode === "push") history.pushState({ url }, "", url);
    else if (historyMode === "replace") history.replaceState({ url }, "", url);
    markBroken(main);
  }

  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const now = Date.now();
      const mode = now - lastChange > NEW_ENTRY_AFTER_MS ? "push" : "replace";
      lastChange = now;
      load(urlFor(), mode);
    }, DEBOUNCE_MS);
  };

  box.addEventListener("input", schedule);
  for (const field of form.querySelectorAll("select, input[type=date]")) {
    field.addEventListener("change", schedule);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    lastChange = Date.now();
    load(urlFor(), "push");
  });
  window.addEventListener("popstate", () => {
    const params = new URLSearchParams(location.search);
    box.value = params.get("q") || "";
    load(location.pathname + location.search, null);
  });
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement
      || target instanceof HTMLSelectElement || target?.isContentEditable;
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      box.focus();
      box.select();
    }
  });
}
