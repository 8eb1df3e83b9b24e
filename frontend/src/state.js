// The view kept in the URL hash: #lat,lon,zoom&species=gold&layer=prospectivity&sites=1&clusters=1&coverage=0

const DEFAULTS = { lat: 39.5, lon: -98.5, zoom: 4, species: "gold", layer: "prospectivity",
  sites: true, clusters: true, coverage: false, allSites: false, opacity: 70 };

export function readState() {
  const state = { ...DEFAULTS };
  const hash = window.location.hash.replace(/^#/, "");
  if (!hash) return state;
  const [view, ...rest] = hash.split("&");
  const parts = view.split(",").map(Number);
  if (parts.length === 3 && parts.every(Number.isFinite)) [state.lat, state.lon, state.zoom] = parts;
  for (const item of rest) {
    const [k, v] = item.split("=");
    if (k === "species" && v) state.species = decodeURIComponent(v);
    if (k === "layer" && v) state.layer = v;
    if (k === "sites") state.sites = v === "1";
    if (k === "clusters") state.clusters = v === "1";
    if (k === "coverage") state.coverage = v === "1";
    if (k === "all") state.allSites = v === "1";
    if (k === "opacity" && Number.isFinite(Number(v))) state.opacity = Number(v);
  }
  return state;
}

export function writeState(state) {
  const flag = (b) => (b ? "1" : "0");
  const hash = `#${state.lat.toFixed(4)},${state.lon.toFixed(4)},${state.zoom}` +
    `&species=${encodeURIComponent(state.species)}&layer=${state.layer}` +
    `&sites=${flag(state.sites)}&clusters=${flag(state.clusters)}&coverage=${flag(state.coverage)}` +
    `&all=${flag(state.allSites)}&opacity=${state.opacity}`;
  if (window.location.hash !== hash) history.replaceState(null, "", hash);
}
