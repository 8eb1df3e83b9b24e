// Known sites: fetched for the view from /api/sites (paged), clustered, with popups.

import { getJSON, query } from "./api.js";
import { escapeHtml } from "./ui.js";

const MAX_SITES = 20000;

export function sitePopup(p) {
  return `<div class="popup"><h3>${escapeHtml(p.name || "(unnamed site)")}</h3>` +
    `<div><b>Commodities:</b> ${escapeHtml((p.commodities || []).join(", ") || "–")}</div>` +
    `<div><b>Species:</b> ${escapeHtml((p.species || []).join(", "))}</div>` +
    `<div><b>Rank:</b> ${escapeHtml(p.rank || "–")}</div>` +
    `<div><b>Source:</b> ${escapeHtml(p.source)}</div>` +
    `<div><b>Record:</b> ${escapeHtml(p.record_id)}</div></div>`;
}

export class SitesLayer {
  constructor(map) {
    this.map = map;
    this.group = L.markerClusterGroup({ chunkedLoading: true, showCoverageOnHover: false, maxClusterRadius: 50 });
    this.request = 0;
  }

  async load({ species, allSpecies }) {
    const id = ++this.request;
    const b = this.map.getBounds();
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    const bbox = [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
      clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)].map((v) => v.toFixed(4)).join(",");
    const features = [];
    let cursor = null;
    do {
      const page = await getJSON(`/api/sites?${query({ bbox, species: allSpecies ? "" : species, limit: 5000, cursor })}`);
      if (id !== this.request) return null; // a newer load started
      features.push(...page.features);
      cursor = page.next_cursor;
    } while (cursor && features.length < MAX_SITES);
    this.group.clearLayers();
    const markers = features.map((f) => {
      const [lon, lat] = f.geometry.coordinates;
      return L.marker([lat, lon], { title: f.properties.name || f.properties.record_id, keyboard: false })
        .bindPopup(sitePopup(f.properties));
    });
    this.group.addLayers(markers);
    return { shown: markers.length, truncated: Boolean(cursor) };
  }
}
