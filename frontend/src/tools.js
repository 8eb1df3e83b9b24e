// The box-statistics and mask-and-infill panels.

import { postJSON, getJSON, query } from "./api.js";
import { bboxParam, drawBox, PHONE } from "./boxtool.js";
import { SitesLayer } from "./sites.js";
import { escapeHtml, fmt, showError, withBusy } from "./ui.js";

// The colour of the hidden commodity's known sites over an infill.
const HIDDEN_SITES = "rgba(230, 57, 70, 0.9)";

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
    if (button.getAttribute("aria-pressed") === "true") return; // already drawing
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
      if (window.matchMedia(PHONE).matches) showError(new Error("Box statistics are in the Controls panel."), "info");
    } catch (err) {
      out.textContent = err.message;
      onError(err);
    }
  });
}

// The ensemble size typed, or an error message saying what is allowed.
export function checkEnsemble(input) {
  const min = Number(input.min) || 1;
  const max = Number(input.max) || 16;
  const text = String(input.value).trim();
  const value = Number(text);
  if (text === "" || !Number.isInteger(value) || value < min || value > max) {
    return { error: `Ensemble size must be a whole number from ${min} to ${max}` +
      `${text === "" ? " (the field is empty)" : ` (not ${text.slice(0, 12)})`}.` };
  }
  return { value };
}

// Keep a pane's content inside a lon/lat box (the pane moves with the map; its clip follows zooms).
function clipPane(map, paneName, bounds) {
  const pane = map.getPane(paneName);
  const apply = (toPoint) => {
    if (!bounds) { pane.style.clipPath = ""; return; }
    const a = toPoint(bounds.getNorthWest());
    const b = toPoint(bounds.getSouthEast());
    pane.style.clipPath = `polygon(${a.x}px ${a.y}px, ${b.x}px ${a.y}px, ${b.x}px ${b.y}px, ${a.x}px ${b.y}px)`;
  };
  const reset = () => apply((ll) => map.latLngToLayerPoint(ll));
  const anim = (e) => apply((ll) => map._latLngToNewLayerPoint(ll, e.zoom, e.center));
  reset();
  map.on("zoomend viewreset", reset);
  map.on("zoomanim", anim);
  return () => { map.off("zoomend viewreset", reset); map.off("zoomanim", anim); pane.style.clipPath = ""; };
}

class InfillView {
  constructor(map, onError) {
    this.map = map;
    this.onError = onError;
    this.overlay = null;
    this.outline = null;
    this.unclip = [];
    this.bounds = null;
    this.sites = new SitesLayer(map, onError, { pane: "infill-sites", fill: HIDDEN_SITES });
    this.opacity = 0.7;
  }

  // Show the infilled layer of one species, clipped to the box, with that species' known sites.
  async show(layer) {
    if (this.overlay) this.map.removeLayer(this.overlay);
    const [w, s, e, n] = layer.bounds;
    const within = L.latLngBounds([Math.max(s, this.bounds.getSouth()), Math.max(w, this.bounds.getWest())],
      [Math.min(n, this.bounds.getNorth()), Math.min(e, this.bounds.getEast())]);
    this.overlay = L.tileLayer(layer.tiles, { pane: "infill", opacity: this.opacity, maxNativeZoom: 12,
      bounds: within.pad(-1e-6) }).addTo(this.map);
    this.overlay.m3Species = layer.species;
    await this.sites.show(layer.species, this.bounds).catch(this.onError);
  }

  start(bounds, outline) {
    this.clear();
    this.bounds = bounds;
    this.outline = outline;
    this.unclip = [clipPane(this.map, "infill", bounds), clipPane(this.map, "infill-sites", bounds)];
  }

  setOpacity(value) {
    this.opacity = value;
    if (this.overlay) this.overlay.setOpacity(value);
  }

  clear() {
    if (this.overlay) this.map.removeLayer(this.overlay);
    if (this.outline) this.map.removeLayer(this.outline);
    this.sites.hide();
    this.unclip.forEach((f) => f());
    this.overlay = this.outline = this.bounds = null;
    this.unclip = [];
  }
}

function infillHtml(body, hide) {
  const shown = Object.fromEntries(hide.map((sp) => [sp, body.species[sp]]).filter(([, v]) => v));
  const switcher = body.layers.length > 1
    ? `<fieldset class="infill-switch"><legend>Show the infill of</legend>${body.layers.map((l, i) =>
      `<label><input type="radio" name="infill-species" value="${i}"${i === 0 ? " checked" : ""}> ` +
      `${escapeHtml(l.species)}</label>`).join("")}</fieldset>` : "";
  return `<div>Infilled <b id="infill-species">${escapeHtml(body.layer.species)}</b> (hidden: ` +
    `${escapeHtml(hide.join(", "))}); ${body.evaluations} evaluation(s), ${body.cells.toLocaleString()} cells, ` +
    `${fmt(body.seconds, 2)} s</div>${switcher}${statsTable(shown)}` +
    '<p class="help"><span class="sym sym-hidden-site"></span> Known sites of the hidden commodity shown, which ' +
    "the model did not see: compare them with the infill. Outside the box nothing changed.</p>" +
    '<button type="button" id="clear-infill">Clear infill</button>';
}

export function setupInfill(map, getSpecies, speciesList, getOpacity, onError) {
  const button = document.getElementById("infill");
  const out = document.getElementById("infill-result");
  const group = document.getElementById("hide-species");
  const ensembleInput = document.getElementById("ensemble");
  const ensembleError = document.getElementById("ensemble-error");
  group.innerHTML = speciesList.map((s) =>
    `<label><input type="checkbox" name="hide" value="${escapeHtml(s)}"> ${escapeHtml(s)}</label>`).join("");
  const view = new InfillView(map, onError);
  const markEnsemble = (error) => {
    ensembleError.textContent = error || "";
    ensembleError.hidden = !error;
    ensembleInput.setAttribute("aria-invalid", String(Boolean(error)));
  };
  ensembleInput.addEventListener("input", () => markEnsemble(""));
  button.addEventListener("click", async () => {
    if (button.getAttribute("aria-pressed") === "true") return; // already drawing
    const ensemble = checkEnsemble(ensembleInput);
    if (ensemble.error) { // before any drawing
      markEnsemble(ensemble.error);
      ensembleInput.focus();
      return;
    }
    markEnsemble("");
    const hidden = [...group.querySelectorAll("input:checked")].map((i) => i.value);
    const hide = hidden.length ? hidden : [getSpecies()];
    const drawn = await drawBox(map, button);
    if (!drawn) return;
    view.start(drawn.bounds, drawn.rect);
    try {
      const body = await withBusy("Running the model…", () => postJSON("/api/infer", {
        bbox: bboxParam(drawn.bounds), hide_species: hide, ensemble: ensemble.value,
      }));
      view.setOpacity(getOpacity());
      out.innerHTML = infillHtml(body, hide);
      await view.show(body.layers[0]);
      out.querySelectorAll("input[name=infill-species]").forEach((radio) => radio.addEventListener("change", () => {
        const layer = body.layers[Number(radio.value)];
        document.getElementById("infill-species").textContent = layer.species;
        view.show(layer);
      }));
      document.getElementById("clear-infill").addEventListener("click", () => { view.clear(); out.innerHTML = ""; });
      if (window.matchMedia(PHONE).matches) showError(new Error(`Infill of ${body.layer.species} drawn; its figures are in the Controls panel.`), "info");
    } catch (err) {
      view.clear();
      out.textContent = err.message;
      onError(err);
    }
  });
  return view;
}
