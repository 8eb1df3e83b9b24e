// Model layers (prospectivity, uncertainty, discrepancy, coverage) as TiTiler tiles, with a legend.

import { getJSON } from "./api.js";
import { escapeHtml } from "./ui.js";

export function gradient(stops) {
  const n = stops.length - 1;
  return `linear-gradient(to right, ${stops.map((c, i) => `${c} ${(100 * i / n).toFixed(1)}%`).join(", ")})`;
}

const stopsCache = new Map();

export async function colormapStops(name) {
  if (!name) return [];
  if (!stopsCache.has(name)) stopsCache.set(name, getJSON(`/api/colormaps/${encodeURIComponent(name)}`));
  return (await stopsCache.get(name)).stops;
}

const stretchCache = new Map();

// The layer's 2nd and 98th percentiles (TiTiler statistics of the layer), or null when they do not spread.
export async function percentileStretch(layer, version) {
  const key = `${version}:${layer.id}`;
  if (!stretchCache.has(key)) {
    const url = `/tiles/${encodeURIComponent(layer.id)}/statistics?p=2&p=98`;
    stretchCache.set(key, getJSON(url).then((body) => {
      const band = Object.values(body)[0] || {};
      const lo = Number(Number(band.percentile_2).toPrecision(4));
      const hi = Number(Number(band.percentile_98).toPrecision(4));
      return Number.isFinite(lo) && Number.isFinite(hi) && hi > lo ? [lo, hi] : null;
    }));
  }
  return stretchCache.get(key);
}

// A tile or TileJSON URL with its rescale replaced.
export function withRescale(url, [lo, hi]) {
  const u = new URL(url, window.location.href);
  u.searchParams.set("rescale", `${lo},${hi}`);
  return u.toString();
}

// A legend number: three significant digits.
const num = (v) => String(Number(v.toPrecision(3)));

// "12 May 2026, 10:04 UTC" from an ISO time (the text itself when it is not one).
function dateText(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return String(iso || "unknown");
  return `${d.toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" })}, ` +
    `${d.toISOString().slice(11, 16)} UTC`;
}

// The served layers' metadata: model id, publication date, evaluations and a link to the model card.
export function layerMetaHtml(body) {
  if (!body || body.layer_version === null || body.layer_version === undefined) return "";
  const model = body.model || {};
  const ensemble = body.ensemble || {};
  const sha = model.sha256 ? String(model.sha256).slice(0, 12) : "";
  const name = model.name || "model";
  const id = sha && !name.includes(sha) ? `${name} (${sha})` : name;
  const evals = ensemble.evaluations !== undefined
    ? `${ensemble.evaluations} evaluations${ensemble.masks ? ` (${ensemble.masks} mask round${ensemble.masks === 1 ? "" : "s"})` : ""}` : "";
  return `Model <b class="model-id">${escapeHtml(id)}</b> · layers v${escapeHtml(body.layer_version)} published ` +
    `<span class="published">${escapeHtml(dateText(body.published_at))}</span>${evals ? ` · <span class="evaluations">${escapeHtml(evals)}</span>` : ""}` +
    ' · <a id="model-card" href="/api/model-card" target="_blank" rel="noopener">model card</a>';
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
    this.meta = body;
    return body;
  }

  find(species, kind) {
    return this.catalogue.find((l) => l.kind === kind && l.species === species);
  }

  async tileLayer(layer, pane, rescale = null) {
    const tj = await getJSON(rescale ? withRescale(layer.tilejson, rescale) : layer.tilejson);
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
        ? `No ${kind} layer for ${species.replaceAll("_", " ")}.`
        : "No model layers yet: run `m3 infer` (or POST /admin/reinference).";
      return null;
    }
    const stretch = await percentileStretch(layer, this.version).catch(() => null);
    if (this.active) { this.map.removeLayer(this.active); this.active = null; } // a newer show() got here first
    this.active = await this.tileLayer(layer, "model", stretch);
    this.active.addTo(this.map);
    await this.drawLegend(layer, legend, stretch);
    return layer;
  }

  async drawLegend(layer, el, stretch) {
    const stops = await colormapStops(layer.colormap);
    const [lo, hi] = stretch || layer.rescale || [0, 1];
    const range = `${num(lo)}..${num(hi)}`;
    const how = stretch
      ? `Colours stretch from the 2nd to the 98th percentile of this layer: <span class="stretch">${range}</span>; ` +
        "lower and higher values take the end colours."
      : `Colours span the layer's default range <span class="stretch">${range}</span>.`;
    const name = `${escapeHtml(layer.species.replaceAll("_", " "))} ${escapeHtml(layer.kind)}`;
    el.innerHTML = `<div><b>${name}</b> <span class="help">(${escapeHtml(layer.colormap)})</span></div>` +
      (stops.length ? `<div class="bar" data-colormap="${escapeHtml(layer.colormap)}" style="background:${gradient(stops)}"></div>` : "") +
      `<div class="ticks"><span>${num(lo)}</span><span>${num((lo + hi) / 2)}</span><span>${num(hi)}</span></div>` +
      `<div class="help">${how}</div>` +
      (layer.kind === "prospectivity" ? '<div class="help">Not the chance of an economic deposit: a rank for follow-up.</div>' : "") +
      `<div class="help">${escapeHtml(layer.description || "")}${this.version !== null ? ` · layer version v${this.version}` : ""}</div>`;
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
