// The box-statistics and mask-and-infill panels.

import { postJSON, getJSON, query } from "./api.js";
import { bboxParam, drawBox } from "./boxtool.js";
import { escapeHtml, fmt, withBusy } from "./ui.js";

function statsTable(stats) {
  const rows = Object.entries(stats).map(([name, s]) =>
    `<tr><td>${escapeHtml(name)}</td><td>${fmt(s.mean)}</td><td>${fmt(s.max)}</td><td>${fmt(s.p90 ?? s.percentile_90)}</td></tr>`);
  return `<table><thead><tr><th>layer</th><th>mean</th><th>max</th><th>p90</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
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
      const stats = body.statistics || body.stats || body;
      out.innerHTML = `<div>Box ${escapeHtml(bbox)}</div>` + statsTable(stats.layers || stats) +
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
        bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()], hide_species: hide, species, ensemble,
      }));
      if (overlay) map.removeLayer(overlay);
      const image = body.image || body.png || (body.layer && body.layer.image);
      const bounds = body.bounds || (body.layer && body.layer.bounds) || [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
      if (image) {
        overlay = L.imageOverlay(image.startsWith("data:") ? image : `data:image/png;base64,${image}`,
          [[bounds[1], bounds[0]], [bounds[3], bounds[2]]], { pane: "infill", opacity: 0.85, alt: "infilled layer" }).addTo(map);
      }
      out.innerHTML = `<div>Hidden: ${escapeHtml(hide.join(", "))}; ensemble ${ensemble}</div>` +
        (body.statistics ? statsTable(body.statistics) : "") +
        (body.known_sites !== undefined ? `<div>Recorded ${escapeHtml(species)} sites in the box: ${body.known_sites}</div>` : "") +
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
