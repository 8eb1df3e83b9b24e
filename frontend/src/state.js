// The view kept in the URL hash: #lat,lon,zoom&species=gold&layer=prospectivity&sites=1&clusters=1&coverage=0
// &commodity=all&opacity=70&hillshade=1&hatch=1&context=gravity_disturbance. Every value is checked: a bad one
// falls back to its default (species, commodity and context layer are checked against the server's lists once
// they are loaded).

export const LAYER_KINDS = ["none", "prospectivity", "uncertainty", "discrepancy"];
export const MIN_ZOOM = 3;
export const MAX_ZOOM = 12;

export const DEFAULTS = Object.freeze({ lat: 39.5, lon: -98.5, zoom: 4, species: "gold", layer: "prospectivity",
  sites: true, clusters: true, coverage: false, commodity: "", opacity: 70, hillshade: true, hatch: true, context: "" });

const ID = /^[a-z0-9_]{1,64}$/;

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

function decode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return "";
  }
}

function readView(state, view) {
  const parts = view.split(",").map((p) => (p.trim() === "" ? NaN : Number(p)));
  if (parts.length !== 3 || !parts.every(Number.isFinite)) return;
  const [lat, lon, zoom] = parts;
  state.lat = clamp(lat, -85, 85);
  state.lon = ((((lon + 180) % 360) + 360) % 360) - 180;
  state.zoom = clamp(Math.round(zoom), MIN_ZOOM, MAX_ZOOM);
}

// The state of a hash, each value checked (the defaults where a value is missing or bad).
export function parseState(hash) {
  const state = { ...DEFAULTS };
  const text = String(hash || "").replace(/^#/, "");
  if (!text) return state;
  const [view, ...rest] = text.split("&");
  readView(state, view);
  const flag = (v, fallback) => (v === "1" ? true : v === "0" ? false : fallback);
  for (const item of rest) {
    const [k, raw = ""] = item.split("=");
    const v = decode(raw).trim().toLowerCase();
    if (k === "species" && ID.test(v)) state.species = v;
    else if (k === "layer" && LAYER_KINDS.includes(v)) state.layer = v;
    else if (k === "sites") state.sites = flag(v, DEFAULTS.sites);
    else if (k === "clusters") state.clusters = flag(v, DEFAULTS.clusters);
    else if (k === "coverage") state.coverage = flag(v, DEFAULTS.coverage);
    else if (k === "all" && v === "1" && !state.commodity) state.commodity = "all";
    else if (k === "commodity" && (v === "all" || ID.test(v))) state.commodity = v;
    else if (k === "hillshade") state.hillshade = flag(v, DEFAULTS.hillshade);
    else if (k === "hatch") state.hatch = flag(v, DEFAULTS.hatch);
    else if (k === "context" && (v === "" || ID.test(v))) state.context = v;
    else if (k === "opacity" && v !== "" && Number.isFinite(Number(v))) state.opacity = clamp(Math.round(Number(v)), 0, 100);
  }
  return state;
}

export function readState() {
  return parseState(window.location.hash);
}

export function writeState(state) {
  const flag = (b) => (b ? "1" : "0");
  const hash = `#${state.lat.toFixed(4)},${state.lon.toFixed(4)},${state.zoom}` +
    `&species=${encodeURIComponent(state.species)}&layer=${state.layer}` +
    `&sites=${flag(state.sites)}&clusters=${flag(state.clusters)}&coverage=${flag(state.coverage)}` +
    (state.commodity ? `&commodity=${encodeURIComponent(state.commodity)}` : "") + `&opacity=${state.opacity}` +
    `&hillshade=${flag(state.hillshade)}&hatch=${flag(state.hatch)}` +
    (state.context ? `&context=${encodeURIComponent(state.context)}` : "");
  if (window.location.hash !== hash) history.replaceState(null, "", hash);
}
