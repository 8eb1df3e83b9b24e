// Offline base layer: US state outlines from the us-atlas package; an online tile layer only if configured.
// Resolves to the base layers (for the layers control) and the states as GeoJSON (for the coverage hatching).

export async function addBaseLayers(map, config) {
  const response = await fetch("/vendor/us-atlas/states-10m.json");
  if (!response.ok) throw new Error("state outlines are missing (run `npm ci` in frontend/)");
  const topology = await response.json();
  const states = window.topojson.feature(topology, topology.objects.states);
  const outline = L.geoJSON(states, {
    pane: "basemap",
    style: { color: "#7d8a99", weight: 1, fillColor: "#fdfdfb", fillOpacity: 1 },
    interactive: false,
  }).addTo(map);
  const layers = { "State outlines (offline)": outline };
  if (config.basemap_url) {
    layers["Online base map"] = L.tileLayer(config.basemap_url, {
      attribution: config.basemap_attribution || "", maxZoom: 18,
    });
  }
  return { layers, states };
}
