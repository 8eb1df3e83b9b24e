// Model layers (prospectivity, uncertainty, discrepancy, coverage) as TiTiler tiles, with a legend.

import { getJSON } from "./api.js";

function gradient(stops) {
  const n = stops.length - 1;
  return `linear-gradient(to right, ${stops.map((c, i) => `${c} ${(100 * i / n).toFixed(1)}%`).join(", ")})`;
}

const stopsCache = new Map();

async function colormapStops(name) {
  if (!name) return [];
  if (!stopsCache.has(name)) stopsCache.set(name, getJSON(`/api/colormaps/${encodeURIComponent(name)}`));
  return (await stopsCache.get(name)).stops;
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
    this.version = body.layer_version ?? null;
    return body;
  }

  find(species, kind) {
    return this.catalogue.find((l) => l.kind === kind && l.species === species);
  }

  async tileLayer(layer, pane) {
    const tj = await getJSON(layer.tilejson);
    if (!tj.tiles || !tj.tiles.length) throw new Error(`no tiles for layer ${layer.id}`);
    const options = { pane, opacity: this.opacity, maxNativeZoom: tj.maxzoom ?? 12, minZoom: 0,
      attribution: "M3 model" };
    if (tj.bounds) {
      // A hair inside the bounds: a tile that only touches their edge (they lie on tile edges) holds no data.
      const [w, s, e, n] = tj.bounds;
      const eps = 1e-6;
      options.bounds = L.latLngBounds([s + eps, w + eps], [n - eps, e - eps]);
    }
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
    const stops = await colormapStops(layer.colormap);
    const [lo, hi] = layer.rescale || [0, 1];
    el.innerHTML = `<div><b>${layer.species} ${layer.kind}</b> <span class="help">(${layer.colormap})</span></div>` +
      (stops.length ? `<div class="bar" data-colormap="${layer.colormap}" style="background:${gradient(stops)}"></div>` : "") +
      `<div class="ticks"><span>${lo}</span><span>${((lo + hi) / 2).toFixed(2)}</span><span>${hi}</span></div>` +
      `<div class="help">${layer.description || ""}${this.version !== null ? ` · layer version v${this.version}` : ""}</div>`;
  }

  setOpacity(value) {
    this.opacity = value;
    if (this.active) this.active.setOpacity(value);
  }

  async showCoverage(on) {
    if (this.coverage) { this.map.removeLayer(this.coverage); this.coverage = null; }
    if (!on) return;
    const body = await getJSON("/api/coverage");
    if (!body.features.length) throw new Error("no coverage yet: build the cube with `m3 cube build`");
    this.coverage = L.geoJSON(body, {
      pane: "coverage", interactive: false,
      style: { color: "#2a9d8f", weight: 2, fillColor: "#2a9d8f", fillOpacity: 0.12, dashArray: "4 3" },
    }).addTo(this.map);
  }
}
