// Flagged clusters: polygons where the model expects a resource no record shows.

import { getJSON, query } from "./api.js";
import { escapeHtml, fmt } from "./ui.js";

export function clusterPopup(p) {
  const sites = p.sites || [];
  const list = sites.slice(0, 50).map((s) => {
    const what = (s.commodities && s.commodities.length ? s.commodities : s.species || []).slice(0, 4);
    return `<li>${escapeHtml(s.name || `site ${s.id}`)} — ${escapeHtml(what.join(", ").replaceAll("_", " "))}</li>`;
  }).join("");
  const total = p.n_sites ?? sites.length;
  const near = p.nearest_site
    ? `${escapeHtml(p.nearest_site.name || `site ${p.nearest_site.id}`)}, ${fmt(p.nearest_distance_m / 1000, 1)} km away`
    : `none known`;
  return `<div class="popup"><h3>Flagged ${escapeHtml(p.species)} cluster (rank ${p.rank ?? "?"})</h3>` +
    `<div><b>Mean prospectivity:</b> ${fmt(p.mean_score)} · <b>max:</b> ${fmt(p.max_score)}</div>` +
    `<div><b>Area:</b> ${fmt(p.area_km2, 0)} km² (${p.n_cells ?? "?"} cells)</div>` +
    `<div><b>Nearest known ${escapeHtml(p.species)} site:</b> ${near}</div>` +
    `<div><b>Known sites of other commodities inside (${total}${total > sites.length ? `, first ${sites.length}` : ""}):</b></div>` +
    (sites.length ? `<ul class="overlap">${list}</ul>` : "<p>None: no record of any commodity inside.</p>") + "</div>";
}

export class ClustersLayer {
  constructor(map) {
    this.map = map;
    this.group = L.featureGroup([], { pane: "clusters" });
  }

  async load(species) {
    const body = await getJSON(`/api/clusters?${query({ species })}`);
    this.group.clearLayers();
    L.geoJSON(body, {
      pane: "clusters",
      style: { color: "#d62828", weight: 2, fillColor: "#f77f00", fillOpacity: 0.25 },
      onEachFeature: (f, layer) => layer.bindPopup(clusterPopup(f.properties), { maxWidth: 320 }),
    }).eachLayer((l) => this.group.addLayer(l));
    return body.features ? body.features.length : 0;
  }
}
