// The M3 map page: wires the base layers, model layers, sites, clusters and tools to the URL state.

import { getJSON, query } from "./api.js";
import { addBaseLayers } from "./basemap.js";
import { ClustersLayer } from "./clusters.js";
import { ContextLayers } from "./context.js";
import { ModelLayers, layerMetaHtml } from "./layers.js";
import { SitesLayer } from "./sites.js";
import { DEFAULTS, LAYER_KINDS, MAX_ZOOM, MIN_ZOOM, readState, writeState } from "./state.js";
import { setupBoxStats, setupInfill } from "./tools.js";
import { setupIdentify, setupReadout } from "./identify.js";
import { escapeHtml, showError, withBusy } from "./ui.js";

const state = readState();
const map = L.map("map", { center: [state.lat, state.lon], zoom: state.zoom, minZoom: MIN_ZOOM, maxZoom: MAX_ZOOM,
  zoomSnap: 1, keyboard: true });
for (const [name, z] of [["basemap", 150], ["hillshade", 160], ["context", 300], ["coverage", 380], ["model", 390],
  ["hatch", 392], ["infill", 395], ["sites", 405], ["infill-sites", 406], ["clusters", 420]]) {
  map.createPane(name).style.zIndex = z;
}
for (const name of ["basemap", "hillshade", "context", "model", "coverage", "hatch", "infill", "sites", "infill-sites"]) {
  map.getPane(name).style.pointerEvents = "none"; // clicks on sites are found from the map's click
}
L.control.scale({ imperial: true }).addTo(map);

const layers = new ModelLayers(map);
const context = new ContextLayers(map);
const clusters = new ClustersLayer(map);
const $ = (id) => document.getElementById(id);

function report(err) {
  console.warn(err.message);
  showError(err);
}

const sites = new SitesLayer(map, report);

function saveView() {
  const c = map.getCenter();
  Object.assign(state, { lat: c.lat, lon: c.lng, zoom: map.getZoom() });
  writeState(state);
}

// The commodity id of the sites shown ("" for every site): the chosen one, else the species.
function sitesCommodity() {
  if (state.commodity === "all") return "";
  return state.commodity || state.species;
}

function updateExportLinks() {
  const b = map.getBounds();
  const clampTo = (v, lo, hi) => Math.min(hi, Math.max(lo, v)).toFixed(4);
  const bbox = [clampTo(b.getWest(), -180, 180), clampTo(b.getSouth(), -90, 90), clampTo(b.getEast(), -180, 180),
    clampTo(b.getNorth(), -90, 90)].join(",");
  for (const format of ["csv", "geojson"]) {
    $(`export-${format}`).href = `/api/sites/export?${query({ bbox, species: sitesCommodity(), format })}`;
  }
}

async function refreshSites() {
  updateExportLinks();
  if (!state.sites) { sites.hide(); $("sites-summary").textContent = ""; return; }
  try {
    const commodity = sitesCommodity();
    const tj = await withBusy("Loading known sites…", () => sites.show(commodity));
    const what = commodity ? ` of ${commodityLabels.get(commodity) || commodity}` : "";
    $("sites-summary").textContent = `${tj.sites.toLocaleString()} known sites${what}; a dot's size grows with ` +
      "the sites it stands for. Click one to list them.";
  } catch (err) { report(err); }
}

const commodityLabels = new Map();

async function fillCommodities(select) {
  const body = await getJSON("/api/commodities");
  for (const c of body.commodities) commodityLabels.set(c.id, c.label);
  select.innerHTML = `<option value="">The commodity above</option>` +
    `<option value="all">Every commodity (${body.sites.toLocaleString()} sites)</option>` +
    body.commodities.map((c) => `<option value="${escapeHtml(c.id)}">${escapeHtml(c.label)} ` +
      `(${c.sites.toLocaleString()})</option>`).join("");
  if (state.commodity && state.commodity !== "all" && !commodityLabels.has(state.commodity)) state.commodity = "";
  select.value = state.commodity;
}

async function refreshClusters() {
  if (!state.clusters) { map.removeLayer(clusters.group); return; }
  clusters.group.addTo(map);
  try { await withBusy("Loading flagged clusters…", () => clusters.load(state.species)); } catch (err) { report(err); }
}

async function refreshLayer() {
  try { await withBusy("Loading layer…", () => layers.show(state.species, state.layer)); } catch (err) { report(err); }
}

async function refreshContext() {
  try {
    await Promise.all([context.showHillshade(state.hillshade), context.showOverlay(state.context, $("context-legend"))]);
  } catch (err) { report(err); }
}

async function refreshHatch() {
  try { await context.showHatch(state.hatch); } catch (err) { report(err); }
}

async function setupContext(states) {
  await context.load().catch(report);
  context.modelCovariates = (layers.meta && layers.meta.model && layers.meta.model.covariates) || [];
  const calibration = layers.meta && layers.meta.model && layers.meta.model.calibration;
  if (layers.meta && layers.meta.model) {
    $("calibration-note").textContent = calibration
      ? `Its values are calibrated probabilities (per species, a ${calibration} calibration fitted on the ` +
        "evaluation protocol's cross-validated predictions)."
      : "Its values are not calibrated probabilities: they rank cells.";
  }
  const select = $("context-layer");
  select.innerHTML = '<option value="">None</option>' + context.covariates().map((l) =>
    `<option value="${escapeHtml(l.id)}">${escapeHtml(l.title)}${l.units ? ` (${escapeHtml(l.units)})` : ""}</option>`).join("");
  if (!context.find(state.context) || state.context === "hillshade") state.context = "";
  select.value = state.context;
  $("hatch-states").textContent = context.coveredText();
  $("show-hillshade").checked = state.hillshade;
  $("show-hatch").checked = state.hatch;
  $("show-hillshade").addEventListener("change", (e) => { state.hillshade = e.target.checked; writeState(state); refreshContext(); });
  $("show-hatch").addEventListener("change", (e) => { state.hatch = e.target.checked; writeState(state); refreshHatch(); });
  select.addEventListener("change", () => { state.context = select.value; writeState(state); refreshContext(); });
  context.states = states;
}

async function start() {
  const config = await getJSON("/api/config").catch(() => ({}));
  const base = await addBaseLayers(map, config);
  L.control.layers(base.layers, {}, { position: "topright" }).addTo(map);

  const speciesBody = await getJSON("/api/species");
  const species = speciesBody.species.filter((s) => s.target).map((s) => s.id);
  const select = $("species");
  const commoditySelect = $("sites-commodity");
  await fillCommodities(commoditySelect).catch(report);
  select.innerHTML = speciesBody.species.filter((s) => s.target)
    .map((s) => `<option value="${escapeHtml(s.id)}" data-label="${escapeHtml(s.label)}">${escapeHtml(s.label)} ` +
      `(${s.sites.toLocaleString()} sites)</option>`).join("");
  if (!species.includes(state.species)) state.species = species.includes(DEFAULTS.species) ? DEFAULTS.species : species[0];
  if (!LAYER_KINDS.includes(state.layer)) state.layer = DEFAULTS.layer;
  select.value = state.species;

  document.querySelectorAll("input[name=layer]").forEach((r) => { r.checked = r.value === state.layer; });
  $("show-sites").checked = state.sites;
  $("show-clusters").checked = state.clusters;
  $("show-coverage").checked = state.coverage;
  $("opacity").value = state.opacity;
  $("opacity-value").textContent = `${state.opacity}%`;
  layers.opacity = state.opacity / 100;

  select.addEventListener("change", () => {
    state.species = select.value; writeState(state);
    refreshLayer(); refreshSites(); refreshClusters();
  });
  document.querySelectorAll("input[name=layer]").forEach((r) => r.addEventListener("change", () => {
    state.layer = r.value; writeState(state); refreshLayer();
  }));
  $("opacity").addEventListener("input", (e) => {
    state.opacity = Number(e.target.value);
    $("opacity-value").textContent = `${state.opacity}%`;
    layers.setOpacity(state.opacity / 100);
    infill.setOpacity(state.opacity / 100);
    writeState(state);
  });
  $("show-sites").addEventListener("change", (e) => { state.sites = e.target.checked; writeState(state); refreshSites(); });
  commoditySelect.addEventListener("change", () => { state.commodity = commoditySelect.value; writeState(state); refreshSites(); });
  $("show-clusters").addEventListener("change", (e) => { state.clusters = e.target.checked; writeState(state); refreshClusters(); });
  $("show-coverage").addEventListener("change", async (e) => {
    state.coverage = e.target.checked; writeState(state);
    try { await layers.showCoverage(state.coverage); } catch (err) { report(err); }
  });
  $("panel-toggle").addEventListener("click", () => {
    const panel = $("panel");
    panel.classList.toggle("collapsed");
    $("panel-toggle").setAttribute("aria-expanded", String(!panel.classList.contains("collapsed")));
  });
  if (window.matchMedia("(max-width: 700px)").matches) {
    $("panel").classList.add("collapsed");
    $("panel-toggle").setAttribute("aria-expanded", "false");
  }

  setupBoxStats(map, () => state.species, report);
  const infill = setupInfill(map, () => state.species, species, () => state.opacity / 100, report);
  setupIdentify(map, [sites, infill.sites], () => ({ id: state.species,
    label: select.selectedOptions[0] ? select.selectedOptions[0].dataset.label : state.species }), report,
  () => Boolean(layers.meta && layers.meta.model && layers.meta.model.calibration));
  setupReadout(map, report);

  map.on("moveend", () => { saveView(); updateExportLinks(); });
  // A permalink pasted into this tab moves the map there (the page writes its own hash without this event).
  window.addEventListener("hashchange", () => {
    const next = readState();
    map.setView([next.lat, next.lon], next.zoom);
  });

  try { await layers.refresh(); } catch (err) { report(err); }
  $("layer-meta").innerHTML = layerMetaHtml(layers.meta);
  await setupContext(base.states);
  await Promise.all([refreshLayer(), refreshSites(), refreshClusters(), refreshContext(), refreshHatch(),
    state.coverage ? layers.showCoverage(true).catch(report) : null]);
  saveView();
  document.body.dataset.ready = "true";
}

start().catch(report);
