// Drawing a box on the map: press the button, then drag (or click two corners; Escape cancels).

export function drawBox(map, button) {
  return new Promise((resolve) => {
    const container = map.getContainer();
    let start = null;
    let rect = null;
    button.setAttribute("aria-pressed", "true");
    container.classList.add("drawing");
    map.dragging.disable();

    const finish = (bounds) => {
      map.off("mousedown", down); map.off("mousemove", move); map.off("mouseup", up);
      document.removeEventListener("keydown", key);
      map.dragging.enable();
      // After the click that follows this mouseup, so the click does not open a site popup.
      setTimeout(() => container.classList.remove("drawing"), 0);
      button.setAttribute("aria-pressed", "false");
      if (rect && !bounds) map.removeLayer(rect);
      resolve(bounds ? { bounds, rect } : null);
    };
    const down = (e) => {
      start = e.latlng;
      rect = L.rectangle(L.latLngBounds(start, start), { color: "#023e8a", weight: 2, fill: false, interactive: false }).addTo(map);
    };
    const move = (e) => { if (start && rect) rect.setBounds(L.latLngBounds(start, e.latlng)); };
    const up = (e) => {
      if (!start) return;
      const bounds = L.latLngBounds(start, e.latlng);
      if (bounds.getNorthEast().equals(bounds.getSouthWest())) return;
      finish(bounds);
    };
    const key = (e) => { if (e.key === "Escape") finish(null); };
    map.on("mousedown", down); map.on("mousemove", move); map.on("mouseup", up);
    document.addEventListener("keydown", key);
  });
}

export function bboxParam(bounds) {
  return [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()].map((v) => v.toFixed(4)).join(",");
}
