// The box-statistics and mask-and-infill panels.

import { postJSON, getJSON, query } from "./api.js";
import { bboxParam, drawBox } from "./boxtool.js";
import { escapeHtml, fmt, withBusy } from "./ui.js";

function statsTable(species) {
  const rows = Object.entries(species).map(([name, s]) =>
    `<tr><td>${escapeHtml(name)}${s.hidden_cells ? " (hidden)" : ""}</td><td>${fmt(s.mean)}</td><td>${fmt(s.p90)}</td>` +
    `<td>${fmt(s.max)}</td><td>${fmt(s.area_km2_above_0_5, 0)}</td></tr>`);
  return "<table><thead><tr><th>commodity</th><th>mean</th><th>p90</th><th>max</th><th>km² &gt; 0.5</th></tr></thead>" +
    `<tbody>${rows.join("")}</tbody></table>`;
}

export function setupBoxStats(map, getSpecies, onError) {
  const button = document.getElementById("box-stats");
  const out = document.getElementById("stats");
  let last = null;
  button.addEventListener("click", async () => {
    const drawn = await drawBox(map, button);
    if (!drawn) return;
    if (last) map.removeLayer(last);
    last = drawn.rect;
    const bbox = bboxParam(drawn.bounds);
    const species = getSpecies();
    try {
      const body = await withBusy("Computing statistics…", () => getJSON(`/api/prospectivity?${query({ bbox, species })}`));
      out.innerHTML = `<div>${escapeHtml(body.kind)} in box ${escapeHtml(bbox)} (layer v${body.layer_version})</div>` +
        statsTable(body.species) +
        `<p><a id="download-tif" href="/api/prospectivity?${query({ bbox, species, format: "tif" })}" download>Download GeoTIFF</a></p>`;
    } catch (err) {
      out.textContent = err.message;
      onError(err);
    }
  });
}

export function setupInfill(map, getSpecies, speciesList, onError) {
  const button = document.getElementById("infill");
  const out = document.getElementById("infill-result");
  const group = document.getElementById("hide-species");
  group.innerHTML = speciesList.map((s) =>
    `<label><input type="checkbox" name="hide" value="${escapeHtml(s)}"> ${escapeHtml(s)}</label>`).join("");
  let overlay = null;
  let outline = null;
  button.addEventListener("click", async () => {
    const hidden = [...group.querySelectorAll("input:checked")].map((i) => i.value);
    const species = getSpecies();
    const hide = hidden.length ? hidden : [species];
    const drawn = await drawBox(map, button);
    if (!drawn) return;
    if (outline) map.removeLayer(outline);
    outline = drawn.rect;
    const b = drawn.bounds;
    const ensemble = Number(document.getElementById("ensemble").value) || 4;
    try {
      const body = await withBusy("Running the model…", () => postJSON("/api/infer", {
        bbox: bboxParam(b), hide_species: hide, ensemble,
      }));
      if (overlay) map.removeLayer(overlay);
      const layer = body.layer;
      const [w, s, e, n] = layer.bounds;
      overlay = L.tileLayer(layer.tiles, { pane: "infill", opacity: 0.85, maxNativeZoom: 12,
        bounds: L.latLngBounds([s, w], [n, e]) }).addTo(map);
      overlay.on("tileerror", () => {});  // tiles outside the box are 404 by design
      const shown = Object.fromEntries(hide.map((sp) => [sp, body.species[sp]]).filter(([, v]) => v));
      out.innerHTML = `<div>Infilled <b>${escapeHtml(layer.species)}</b> (hidden: ${escapeHtml(hide.join(", "))}); ` +
        `${body.evaluations} evaluation(s), ${body.cells.toLocaleString()} cells, ${fmt(body.seconds, 2)} s</div>` +
        statsTable(shown) + '<p class="help">Compare with the recorded sites shown on the map.</p>' +
        `<button type="button" id="clear-infill">Clear infill</button>`;
      document.getElementById("clear-infill").addEventListener("click", () => {
        if (overlay) map.removeLayer(overlay);
        if (outline) map.removeLayer(outline);
        overlay = outline = null;
        out.innerHTML = "";
      });
    } catch (err) {
      out.textContent = err.message;
      onError(err);
    }
  });
}
