// Terrain and context: the hillshade base layer, the hatching outside survey coverage, and the cube's covariates
// as optional overlays with their provenance. Everything comes from GET /api/context (and the states of
// /api/coverage), so a covariate added to the cube appears here by itself.

import { getJSON } from "./api.js";
import { colormapStops, gradient } from "./layers.js";
import { escapeHtml } from "./ui.js";

// The deepest zoom the server renders context tiles for (beyond, Leaflet enlarges them).
const CONTEXT_MAX_NATIVE_ZOOM = 10;

const num = (v) => String(Number(Number(v).toPrecision(3)));

const boundsCache = new Map();

// A layer's tiles, asked for only inside the bounds of its TileJSON (a hair inside: tiles that only touch the
// edge hold no data).
async function tileLayer(layer, pane, opacity) {
  if (!boundsCache.has(layer.tilejson)) boundsCache.set(layer.tilejson, getJSON(layer.tilejson).then((tj) => tj.bounds));
  const [w, s, e, n] = await boundsCache.get(layer.tilejson);
  const eps = 1e-6;
  return L.tileLayer(layer.tiles, { pane, opacity, maxNativeZoom: CONTEXT_MAX_NATIVE_ZOOM, minZoom: 0,
    bounds: L.latLngBounds([s + eps, w + eps], [n - eps, e - eps]), attribution: "Terrain and covariates: M3 cube" });
}

export function provenanceHtml(layer) {
  const items = (layer.inputs || []).map((i) => `<li>${escapeHtml(i.source || "source not recorded")} ` +
    `<span class="help">(file ${escapeHtml(i.file)}${i.sha256 ? `, sha256 ${escapeHtml(i.sha256.slice(0, 12))}…` : ""})</span></li>`);
  return items.length ? `<div class="provenance"><b>Provenance</b><ul>${items.join("")}</ul></div>` : "";
}

export class ContextLayers {
  constructor(map) {
    this.map = map;
    this.catalogue = [];
    this.coverage = null;
    this.hillshade = null;
    this.overlay = null;
    this.hatch = null;
    this.states = null;
    this.modelCovariates = [];
    this.hillshadeRequest = 0;
    this.overlayRequest = 0;
  }

  async load() {
    const body = await getJSON("/api/context");
    this.catalogue = body.layers || [];
    this.coverage = body.coverage || null;
    return body;
  }

  covariates() {
    return this.catalogue.filter((l) => l.kind === "covariate");
  }

  find(id) {
    return this.catalogue.find((l) => l.id === id);
  }

  async showHillshade(on) {
    const shown = ++this.hillshadeRequest;
    if (this.hillshade) { this.map.removeLayer(this.hillshade); this.hillshade = null; }
    const layer = this.find("hillshade");
    if (!on || !layer) return;
    const tiles = await tileLayer(layer, "hillshade", 0.55);
    if (shown === this.hillshadeRequest) this.hillshade = tiles.addTo(this.map);
  }

  // The covariate overlay `id` ("" for none), with its legend and provenance in `legend`.
  async showOverlay(id, legend) {
    const shown = ++this.overlayRequest;
    if (this.overlay) { this.map.removeLayer(this.overlay); this.overlay = null; }
    legend.innerHTML = "";
    const layer = id ? this.find(id) : null;
    if (!layer) return null;
    const tiles = await tileLayer(layer, "context", 0.8);
    if (shown !== this.overlayRequest) return null; // a newer choice is on its way
    this.overlay = tiles.addTo(this.map);
    const stops = await colormapStops(layer.colormap).catch(() => []);
    const [lo, hi] = layer.rescale || [0, 1];
    const units = layer.units ? ` ${escapeHtml(layer.units)}` : "";
    legend.innerHTML = `<div><b>${escapeHtml(layer.title)}</b>${layer.units ? ` <span class="help">(${escapeHtml(layer.units)})</span>` : ""}</div>` +
      (stops.length ? `<div class="bar" style="background:${gradient(stops)}"></div>` : "") +
      `<div class="ticks"><span>${num(lo)}${units}</span><span>${num((lo + hi) / 2)}</span><span>${num(hi)}${units}</span></div>` +
      `<div class="help">${escapeHtml(layer.description)}. Colours span the mean ± 2 standard deviations over the ` +
      `contiguous US. ${this.modelCovariates.includes(layer.id) ? "The served model reads this layer."
        : "The served model does not read this layer: it is context only."}</div>` + provenanceHtml(layer);
    return layer;
  }

  // The states outside survey coverage, hatched (us-atlas states whose name is not among the covered ones).
  async showHatch(on, states) {
    if (states) this.states = states;
    if (this.hatch) { this.map.removeLayer(this.hatch); this.hatch = null; }
    if (!on || !this.states) return null;
    const covered = await getJSON("/api/coverage");
    if (!covered.features.length) return null; // no cube: nothing is known to be surveyed
    const names = new Set(covered.features.map((f) => f.properties.name));
    const outside = { type: "FeatureCollection", features: this.states.features.filter((f) => !names.has(f.properties.name)) };
    this.hatch = L.geoJSON(outside, { pane: "hatch", interactive: false,
      style: { stroke: false, fill: true, fillColor: "#4a4f57", fillOpacity: 1, className: "hatch" } }).addTo(this.map);
    return covered;
  }

  // "7 states (AL, CA, ...)" from the cube's coverage rule.
  coveredText() {
    const codes = this.coverage ? this.coverage.covered_states : [];
    return codes.length ? `${codes.length} states (${codes.join(", ")})` : "no state (no cube has been built)";
  }
}
