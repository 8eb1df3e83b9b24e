// Small helpers for status, errors and escaping.

let busy = 0;

export function setBusy(delta, message) {
  busy = Math.max(0, busy + delta);
  const el = document.getElementById("status");
  el.classList.toggle("busy", busy > 0);
  el.textContent = busy > 0 ? message || "Loading…" : "";
}

export async function withBusy(message, fn) {
  setBusy(+1, message);
  try {
    return await fn();
  } finally {
    setBusy(-1);
  }
}

let errorTimer;
export function showError(err, kind = "error") {
  const el = document.getElementById("error");
  el.textContent = err && err.message ? err.message : String(err);
  el.classList.toggle("info", kind === "info");
  el.setAttribute("role", kind === "info" ? "status" : "alert");
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { el.hidden = true; }, 8000);
}

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return typeof value === "number" ? value.toFixed(digits) : String(value);
}
