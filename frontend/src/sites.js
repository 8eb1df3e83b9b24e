// Known sites as vector tiles from /tiles/sites: one dot per occupied grid cell, sized by its count of sites.
// Pans only fetch the new tiles (the browser caches the rest); a click lists the sites of the dot's cell.

import { getJSON, query } from "./api.js";
import { decodeTile } from "./mvt.js";
import { escapeHtml } from "./ui.js";

const TILE = 256;
const R = 6378137;
const LISTED = 10;

export function radius(count) {
  return Math.min(2.5 + 1.25 * Math.log2(count), 8);
}

function unproject(mx, my) {
  return [mx / R * 180 / Math.PI, (2 * Math.atan(Math.exp(my / R)) - Math.PI / 2) * 180 / Math.PI];
}

// The lon/lat box of the grid cell that holds a point of tile (z, x, y) at tile coordinates (px, py).
export function cellBox(z, x, y, px, py, extent, grid) {
  const world = 2 * Math.PI * R;
  const tile = world / 2 ** z;
  const cell = tile / grid;
  const cx = Math.min(grid - 1, Math.floor(px / (extent / grid)));
  const cy = Math.min(grid - 1, Math.floor(py / (extent / grid)));
  const x0 = -world / 2 + x * tile + cx * cell;
  const y1 = world / 2 - y * tile - cy * cell;
  const [minx, miny] = unproject(x0, y1 - cell);
  const [maxx, maxy] = unproject(x0 + cell, y1);
  const pad = 1e-7;
  return [minx - pad, miny - pad, maxx + pad, maxy + pad].map((v) => v.toFixed(7)).join(",");
}

// A link for a source that is a URL or a DOI; plain text otherwise.
export function sourceLink(source) {
  const text = String(source ?? "");
  let href = null;
  if (/^https?:\/\/[^\s"<>]+$/i.test(text)) href = text;
  else if (/^doi:\s*10\.\S+$/i.test(text)) href = `https://doi.org/${text.replace(/^doi:\s*/i, "")}`;
  else if (/^10\.\d{4,9}\/\S+$/.test(text)) href = `https://doi.org/${text}`;
  if (!href) return escapeHtml(text || "–");
  return `<a href="${escapeHtml(href)}" target="_blank" rel="noopener noreferrer">${escapeHtml(text)}</a>`;
}

const list = (values) => escapeHtml((values || []).join(", ").replaceAll("_", " ") || "–");

export function sitePopup(feature) {
  const p = feature.properties;
  const [lon, lat] = feature.geometry.coordinates;
  return `<div class="site"><h3>${escapeHtml(p.name || "(unnamed site)")}</h3>` +
    `<div><b>Commodities:</b> ${list(p.commodities)}</div>` +
    `<div><b>Deposit types:</b> ${list(p.deposit_types)}</div>` +
    `<div><b>State:</b> ${escapeHtml(p.state || "–")} · <b>Location:</b> ${lat.toFixed(5)}, ${lon.toFixed(5)}</div>` +
    `<div><b>Rank / status:</b> ${escapeHtml(p.rank || "–")}</div>` +
    `<div><b>Source:</b> ${sourceLink(p.source)} <span class="help">record ${escapeHtml(p.record_id)}</span></div></div>`;
}

export function cellPopup(body, count, csvHref) {
  const shown = body.features.length;
  const head = count > 1 ? `<p class="help">${count.toLocaleString()} sites in this cell` +
    `${count > shown ? `, the first ${shown} listed; zoom in to separate them or ` +
      `<a href="${escapeHtml(csvHref)}" download>download all of them (CSV)</a>` : ""}.</p>` : "";
  return `<div class="popup sites-popup">${head}${body.features.map(sitePopup).join("")}` +
    `${shown ? "" : "<p>No site found here any more.</p>"}</div>`;
}

// A GridLayer drawing the site tiles on canvases; dots near a tile edge are drawn on the neighbour too.
const SiteGrid = L.GridLayer.extend({
  initialize(options) {
    L.GridLayer.prototype.initialize.call(this, options);
    this.data = new Map();
    this.on("tileunload", (e) => {
      if (e.tile.m3Abort) e.tile.m3Abort.abort();
      this.data.delete(this._tileCoordsToKey(e.coords));
    });
  },

  createTile(coords, done) {
    const canvas = L.DomUtil.create("canvas", "leaflet-tile");
    const ratio = window.devicePixelRatio || 1;
    canvas.width = canvas.height = TILE * ratio;
    const controller = new AbortController();
    canvas.m3Abort = controller;
    const key = this._tileCoordsToKey(coords);
    const wrapped = this._wrapCoords(coords);
    const url = L.Util.template(this.options.url, { z: wrapped.z, x: wrapped.x, y: wrapped.y });
    fetch(url, { signal: controller.signal })
      .then(async (response) => {
        if (!response.ok) throw new Error(`site tile ${wrapped.z}/${wrapped.x}/${wrapped.y}: HTTP ${response.status}`);
        const layer = response.status === 204 ? null : decodeTile(await response.arrayBuffer()).sites;
        const extent = layer ? layer.extent : 4096;
        const dots = layer ? layer.features.map((f) => ({
          px: f.points[0][0], py: f.points[0][1], x: f.points[0][0] * TILE / extent, y: f.points[0][1] * TILE / extent,
          count: Number(f.properties.count) || 1,
        })) : [];
        this.data.set(key, { coords, wrapped, extent, dots, canvas });
        this.redrawAround(coords);
        done(null, canvas);
      })
      .catch((err) => {
        if (err.name === "AbortError") return;
        console.warn(err.message);
        done(err, canvas);
      });
    return canvas;
  },

  // Redraw a tile and its loaded neighbours (their dots may reach across the shared edges).
  redrawAround(coords) {
    for (let dx = -1; dx <= 1; dx += 1) {
      for (let dy = -1; dy <= 1; dy += 1) {
        const c = L.point(coords.x + dx, coords.y + dy);
        c.z = coords.z;
        const tile = this.data.get(this._tileCoordsToKey(c));
        if (tile) this.drawTile(tile);
      }
    }
  },

  drawTile(tile) {
    const ctx = tile.canvas.getContext("2d");
    const ratio = tile.canvas.width / TILE;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, TILE, TILE);
    ctx.fillStyle = this.options.fill || "rgba(29, 53, 87, 0.8)";
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 0.8;
    for (let dx = -1; dx <= 1; dx += 1) {
      for (let dy = -1; dy <= 1; dy += 1) {
        const c = L.point(tile.coords.x + dx, tile.coords.y + dy);
        c.z = tile.coords.z;
        const other = this.data.get(this._tileCoordsToKey(c));
        if (!other) continue;
        for (const d of other.dots) {
          const x = d.x + dx * TILE;
          const y = d.y + dy * TILE;
          const r = radius(d.count);
          if (x < -r || y < -r || x > TILE + r || y > TILE + r) continue;
          ctx.beginPath();
          ctx.arc(x, y, r, 0, 2 * Math.PI);
          ctx.fill();
          ctx.stroke();
        }
      }
    }
  },

  // The dot nearest to a layer point within its radius plus a few pixels, with its tile.
  hit(latlng) {
    const z = this._tileZoom;
    if (z === undefined || !this._map) return null;
    const p = this._map.project(latlng, z);
    const tx = Math.floor(p.x / TILE);
    const ty = Math.floor(p.y / TILE);
    let best = null;
    for (let dx = -1; dx <= 1; dx += 1) {
      for (let dy = -1; dy <= 1; dy += 1) {
        const c = L.point(tx + dx, ty + dy);
        c.z = z;
        const tile = this.data.get(this._tileCoordsToKey(c));
        if (!tile) continue;
        for (const d of tile.dots) {
          const dist = Math.hypot((tile.coords.x * TILE + d.x) - p.x, (tile.coords.y * TILE + d.y) - p.y);
          if (dist <= radius(d.count) + 3 && (!best || dist < best.dist)) best = { dist, dot: d, tile };
        }
      }
    }
    return best;
  },
});

export class SitesLayer {
  // options: pane (default "sites"), fill (the dots' colour).
  constructor(map, onError, options = {}) {
    this.map = map;
    this.onError = onError;
    this.options = options;
    this.layer = null;
    this.tilejson = null;
    this.commodity = "";
    this.popupRequest = 0;
    this.showRequest = 0;
    map.on("click", (e) => this.onClick(e));
    let frame = 0;
    map.on("mousemove", (e) => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        const over = this.layer && this.layer.hit(e.latlng) && !this.ignored(e.originalEvent);
        map.getContainer().classList.toggle("over-site", Boolean(over));
      });
    });
  }

  // Show the sites of a commodity id ("" for every site), only tiles inside `within` (LatLngBounds) if given;
  // resolves to the TileJSON.
  async show(commodity, within = null) {
    const id = ++this.showRequest;
    const tj = await getJSON(`/tiles/sites/tilejson.json?${query({ commodity })}`);
    if (id !== this.showRequest) return tj; // a newer choice is on its way
    if (this.layer && this.tilejson && this.tilejson.tiles[0] === tj.tiles[0] && !within && !this.within) {
      this.layer.addTo(this.map);
      return tj;
    }
    this.hide();
    this.tilejson = tj;
    this.commodity = commodity;
    if (!tj.bounds) return tj; // no site of this commodity: no tile to ask for
    const [w, s, e, n] = tj.bounds;
    const pad = 1e-6;
    let bounds = L.latLngBounds([s - pad, w - pad], [n + pad, e + pad]);
    this.within = within;
    if (within) {
      if (!bounds.intersects(within)) return tj;
      bounds = L.latLngBounds([Math.max(bounds.getSouth(), within.getSouth()), Math.max(bounds.getWest(), within.getWest())],
        [Math.min(bounds.getNorth(), within.getNorth()), Math.min(bounds.getEast(), within.getEast())]);
    }
    this.layer = new SiteGrid({ pane: this.options.pane || "sites", url: tj.tiles[0], grid: tj.grid, tileSize: TILE,
      minZoom: tj.minzoom, maxZoom: 18, bounds, fill: this.options.fill, updateWhenZooming: false, keepBuffer: 2 });
    this.layer.addTo(this.map);
    return tj;
  }

  hide() {
    this.showRequest += 1;
    if (this.layer) this.map.removeLayer(this.layer);
    this.layer = null;
    this.tilejson = null;
  }

  ignored(event) {
    const target = event && event.target;
    return Boolean(target && target.closest && (target.closest(".leaflet-interactive, .leaflet-popup, .leaflet-control")
      || target.closest(".drawing")));
  }

  async onClick(e) {
    if (!this.layer || this.ignored(e.originalEvent)) return;
    const hit = this.layer.hit(e.latlng);
    if (!hit) return;
    const { dot, tile } = hit;
    const { z, x, y } = tile.wrapped;
    const bbox = cellBox(z, x, y, dot.px, dot.py, tile.extent, this.tilejson.grid);
    const at = this.map.unproject(L.point(tile.coords.x * TILE + dot.x, tile.coords.y * TILE + dot.y), z);
    const popup = L.popup({ maxWidth: 340, minWidth: 220, autoPanPadding: [24, 24] })
      .setLatLng(at).setContent('<div class="popup sites-popup">Loading…</div>').openOn(this.map);
    const id = ++this.popupRequest;
    try {
      const body = await getJSON(`/api/sites?${query({ bbox, species: this.commodity, limit: LISTED })}`);
      const csv = `/api/sites/export?${query({ bbox, species: this.commodity, format: "csv" })}`;
      if (id === this.popupRequest && popup.isOpen()) popup.setContent(cellPopup(body, dot.count, csv));
    } catch (err) {
      if (id === this.popupRequest && popup.isOpen()) popup.setContent(`<div class="popup">${escapeHtml(err.message)}</div>`);
      this.onError(err);
    }
  }
}
