// The M3 map page: wires the base layers, model layers, sites, clusters and tools to the URL state.

import { getJSON } from "./api.js";
import { addBaseLayers } from "./basemap.js";
import { ClustersLayer } from "./clusters.js";
import { ModelLayers } from "./layers.js";
import { SitesLayer } from "./sites.js";
import { readState, writeState } from "./state.js";
import { setupBoxStats, setupInfill } from "./tools.js";
import { showError, withBusy } from "./ui.js";

const state = readState();
const map = L.map("map", { center: [state.lat, state.lon], zoom: state.zoom, minZoom: 3, maxZoom: 12,
  zoomSnap: 1, keyboard: true });
for (const [name, z] of [["basemap", 150], ["coverage", 380], ["model", 390], ["infill", 395], ["clusters", 420]]) {
  map.createPane(name).style.zIndex = z;
}
map.getPane("basemap").style.pointerEvents = "none";
map.getPane("model").style.pointerEvents = "none";
map.getPane("coverage").style.pointerEvents = "none";
L.control.scale({ imperial: true }).addTo(map);

const layers = new ModelLayers(map);
const sites = new SitesLayer(map);
const clusters = new ClustersLayer(map);
const $ = (id) => document.getElementById(id);

function report(err) {
  console.warn(err.message);
  showError(err);
}

function saveView() {
  const c = map.getCenter();
  Object.assign(state, { lat: c.lat, lon: c.lng, zoom: map.getZoom() });
  writeState(state);
}

async function refreshSites() {
  if (!state.sites) { map.removeLayer(sites.group); return; }
  sites.group.addTo(map);
  try {
    const res = await withBusy("Loading known sites…", () => sites.load({ species: state.species, allSpecies: state.allSites }));
    if (res && res.truncated) showError(`Showing the first ${res.shown.toLocaleString()} sites; zoom in to see them all.`, "info");
  } catch (err) { report(err); }
}

async function refreshClusters() {
  if (!state.clusters) { map.removeLayer(clusters.group); return; }
  clusters.group.addTo(map);
  try { await withBusy("Loading flagged clusters…", () => clusters.load(state.species)); } catch (err) { report(err); }
}

async function refreshLayer() {
  try { await withBusy("Loading layer…", () => layers.show(state.species, state.layer)); } catch (err) { report(err); }
}

async function start() {
  const config = await getJSON("/api/config").catch(() => ({}));
  const bases = await addBaseLayers(map, config);
  L.control.layers(bases, {}, { position: "topright" }).addTo(map);

  const speciesBody = await getJSON("/api/species");
  const species = speciesBody.species.filter((s) => s.target).map((s) => s.id);
  const select = $("species");
  select.innerHTML = speciesBody.species.filter((s) => s.target)
    .map((s) => `<option value="${s.id}">${s.label} (${s.sites.toLocaleString()} sites)</option>`).join("");
  if (!species.includes(state.species)) state.species = species[0];
  select.value = state.species;

  document.querySelectorAll("input[name=layer]").forEach((r) => { r.checked = r.value === state.layer; });
  $("show-sites").checked = state.sites;
  $("show-clusters").checked = state.clusters;
  $("show-coverage").checked = state.coverage;
  $("sites-all-species").checked = state.allSites;
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
    writeState(state);
  });
  $("show-sites").addEventListener("change", (e) => { state.sites = e.target.checked; writeState(state); refreshSites(); });
  $("sites-all-species").addEventListener("change", (e) => { state.allSites = e.target.checked; writeState(state); refreshSites(); });
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
  setupInfill(map, () => state.species, species, report);

  let moveTimer;
  map.on("moveend", () => {
    saveView();
    clearTimeout(moveTimer);
    moveTimer = setTimeout(refreshSites, 250);
  });

  try { await layers.refresh(); } catch (err) { report(err); }
  await Promise.all([refreshLayer(), refreshSites(), refreshClusters(),
    state.coverage ? layers.showCoverage(true).catch(report) : null]);
  saveView();
  document.body.dataset.ready = "true";
}

start().catch(report);
