// Identify: a click on the map (not on a site dot or a cluster) shows the commodity's layers at that cell, whether
// it lies inside survey coverage and the nearest known site of the commodity. Also the coordinate readout and the
// "copy link" button.

import { getJSON, query } from "./api.js";
import { escapeHtml, fmt } from "./ui.js";

const value = (v, digits = 3) => (v === null || v === undefined ? "no value" : fmt(v, digits));

export function distanceText(metres) {
  if (metres === null || metres === undefined) return "";
  return metres < 10_000 ? `${fmt(metres / 1000, 1)} km` : `${Math.round(metres / 1000).toLocaleString()} km`;
}

// What the prospectivity value is, for a served model with a calibration (model.json's `calibration`) and without.
export const CALIBRATED = "Prospectivity is a calibrated probability: the chance that a known site of the commodity " +
  "would be recorded in this 1-mile cell if it were surveyed like the training states, not the chance of a deposit";
export const UNCALIBRATED = "Prospectivity values are not calibrated probabilities: they rank 1-mile cells by favourability";

export function identifyPopup(body, label, calibrated = false) {
  const coverage = body.in_coverage === null ? "unknown (no cube)"
    : body.in_coverage ? "inside (a state with systematic records)"
      : "outside: an empty or low cell here is unknown, not barren";
  const near = body.nearest_site
    ? `${escapeHtml(body.nearest_site.name || `site ${body.nearest_site.id}`)}, ${distanceText(body.nearest_distance_m)} away`
    : "none known";
  const disc = body.discrepancy === null
    ? (body.in_coverage ? "no value (a record of the commodity exists here)" : "no value (outside coverage)")
    : fmt(body.discrepancy);
  const rows = [
    ["Prospectivity", `${value(body.prospectivity)} <span class="help">(relative rank, not a probability)</span>`],
    ["Uncertainty", value(body.uncertainty)],
    ["Evaluations", value(body.evaluations, 0)],
    ["Discrepancy", disc],
    ["Survey coverage", escapeHtml(coverage)],
    [`Nearest known ${escapeHtml(label)} site`, near],
  ];
  return `<div class="popup identify-popup"><h3>${escapeHtml(label)} at lon ${body.lon.toFixed(5)}, lat ${body.lat.toFixed(5)}</h3>` +
    `<table>${rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("")}</table>` +
    `<p class="help">${calibrated ? CALIBRATED : UNCALIBRATED} (layer version v${escapeHtml(body.layer_version)}).</p></div>`;
}

// Whether a map click belongs to something else: a vector layer, a popup, a control, or the box tool.
function ignored(event) {
  const target = event && event.target;
  return Boolean(target && target.closest && (target.closest(".leaflet-interactive, .leaflet-popup, .leaflet-control")
    || target.closest(".drawing")));
}

// `sites`: the site layers whose dots take clicks themselves (a SitesLayer or a list of them); `calibrated()`:
// whether the served model carries a calibration.
export function setupIdentify(map, sites, commodity, onError, calibrated = () => false) {
  let request = 0;
  const siteLayers = Array.isArray(sites) ? sites : [sites];
  map.on("click", async (e) => {
    if (ignored(e.originalEvent) || siteLayers.some((s) => s.layer && s.layer.hit(e.latlng))) return;
    const { id, label } = commodity();
    const lon = ((((e.latlng.lng + 180) % 360) + 360) % 360) - 180;
    const width = Math.min(360, map.getSize().x - 70); // a phone keeps the whole popup in view
    const popup = L.popup({ maxWidth: width, minWidth: Math.min(240, width), autoPanPadding: [24, 24] })
      .setLatLng(e.latlng).setContent('<div class="popup identify-popup">Loading…</div>').openOn(map);
    const mine = ++request;
    try {
      const body = await getJSON(`/api/identify?${query({ lon: lon.toFixed(6), lat: e.latlng.lat.toFixed(6), species: id })}`);
      if (mine === request && popup.isOpen()) popup.setContent(identifyPopup(body, label, calibrated()));
    } catch (err) {
      if (mine === request && popup.isOpen()) popup.setContent(`<div class="popup">${escapeHtml(err.message)}</div>`);
      onError(err);
    }
  });
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("the browser refused to copy; copy the address bar instead");
}

// The coordinate readout (the pointer's lon/lat; the map centre on touch devices or when the pointer is away)
// and the "copy link" button, as a control in the bottom-left corner.
export function setupReadout(map, onError) {
  const control = L.control({ position: "bottomleft" });
  control.onAdd = () => {
    const div = L.DomUtil.create("div", "leaflet-control readout");
    div.innerHTML = '<span id="coords" aria-live="off"></span> <button id="copy-link" type="button" ' +
      'title="Copy a link to this view">Copy link</button>';
    L.DomEvent.disableClickPropagation(div);
    return div;
  };
  control.addTo(map);
  const el = document.getElementById("coords");
  const show = (latlng, what) => {
    const lon = ((((latlng.lng + 180) % 360) + 360) % 360) - 180;
    el.textContent = `${what} lon ${lon.toFixed(5)}, lat ${latlng.lat.toFixed(5)}`;
    el.dataset.source = what === "Centre" ? "centre" : "pointer";
  };
  const touch = window.matchMedia("(hover: none), (pointer: coarse)").matches;
  const centre = () => show(map.getCenter(), "Centre");
  if (!touch) {
    map.on("mousemove", (e) => show(e.latlng, "Pointer"));
    map.getContainer().addEventListener("mouseleave", centre);
  }
  map.on("move", () => { if (touch || el.dataset.source !== "pointer") centre(); });
  centre();
  const button = document.getElementById("copy-link");
  button.addEventListener("click", async () => {
    try {
      await copyText(window.location.href);
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy link"; }, 2000);
    } catch (err) { onError(err); }
  });
}
