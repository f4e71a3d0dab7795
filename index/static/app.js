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
