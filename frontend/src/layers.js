// Model layers (prospectivity, uncertainty, discrepancy, coverage) as TiTiler tiles, with a legend.

import { getJSON } from "./api.js";

function gradient(stops) {
  const n = stops.length - 1;
  return `linear-gradient(to right, ${stops.map((c, i) => `${c} ${(100 * i / n).toFixed(1)}%`).join(", ")})`;
}

async function colormapStops(layer) {
  if (Array.isArray(layer.legend) && layer.legend.length) return layer.legend;
  if (!layer.colormap_url) return [];
  const cmap = await getJSON(layer.colormap_url);
  const entries = Object.entries(cmap).map(([k, v]) => [Number(k), v]).sort((a, b) => a[0] - b[0]);
  const step = Math.max(1, Math.floor(entries.length / 16));
  return entries.filter((_, i) => i % step === 0 || i === entries.length - 1)
    .map(([, [r, g, b]]) => `rgb(${r},${g},${b})`);
}

export class ModelLayers {
  constructor(map) {
    this.map = map;
    this.catalogue = [];
    this.version = null;
    this.active = null;
    this.coverage = null;
    this.opacity = 0.7;
  }

  async refresh() {
    const body = await getJSON("/api/layers");
    this.catalogue = body.layers || [];
    this.version = body.version ?? null;
    return body;
  }

  find(species, kind) {
    return this.catalogue.find((l) => l.kind === kind && (kind === "coverage" || l.species === species));
  }

  async tileLayer(layer, pane) {
    const tj = await getJSON(layer.tilejson);
    const options = { pane, opacity: this.opacity, maxNativeZoom: tj.maxzoom ?? 12, minZoom: 0,
      attribution: "M3 model" };
    if (tj.bounds) options.bounds = L.latLngBounds([tj.bounds[1], tj.bounds[0]], [tj.bounds[3], tj.bounds[2]]);
    const t = L.tileLayer(tj.tiles[0], options);
    t.m3Layer = layer;
    return t;
  }

  async show(species, kind) {
    if (this.active) { this.map.removeLayer(this.active); this.active = null; }
    const legend = document.getElementById("legend");
    legend.innerHTML = "";
    if (kind === "none") return null;
    const layer = this.find(species, kind);
    if (!layer) {
      legend.textContent = this.catalogue.length
        ? `No ${kind} layer for ${species}.`
        : "No model layers yet: run `m3 infer` (or POST /admin/reinference).";
      return null;
    }
    this.active = await this.tileLayer(layer, "model");
    this.active.addTo(this.map);
    await this.drawLegend(layer, legend);
    return layer;
  }

  async drawLegend(layer, el) {
    const stops = await colormapStops(layer);
    const [lo, hi] = layer.rescale || [0, 1];
    el.innerHTML = `<div>${layer.title || `${layer.species} ${layer.kind}`}</div>` +
      (stops.length ? `<div class="bar" style="background:${gradient(stops)}"></div>` : "") +
      `<div class="ticks"><span>${lo}</span><span>${((lo + hi) / 2).toFixed(2)}</span><span>${hi}</span></div>` +
      (layer.version !== undefined ? `<div class="help">layer version v${layer.version}</div>` : "");
  }

  setOpacity(value) {
    this.opacity = value;
    if (this.active) this.active.setOpacity(value);
  }

  async showCoverage(on) {
    if (this.coverage) { this.map.removeLayer(this.coverage); this.coverage = null; }
    if (!on) return;
    const layer = this.find(null, "coverage");
    if (!layer) throw new Error("the coverage layer is not available yet (run m3 infer)");
    this.coverage = await this.tileLayer(layer, "coverage");
    this.coverage.setOpacity(0.35);
    this.coverage.addTo(this.map);
  }
}
