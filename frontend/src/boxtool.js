// Drawing a box on the map, armed by a tool's button: drag with a mouse, a finger or a pen; or click (tap) two
// corners; or, with the keyboard, move a cross with the arrow keys and press Enter at each corner. Escape or the
// hint's Cancel button cancels. One rectangle follows the drawing and is the one returned (nothing stray is left),
// the map does not pan or zoom meanwhile, and no page text gets selected. On a phone the panel closes while
// drawing, so the map is free.

// A press that moves less than this (pixels) is a click setting a corner, not a drag.
const CLICK_SLOP = 6;
// Pixels the keyboard cross moves per arrow key press (with Shift: KEY_STEP_FAST).
const KEY_STEP = 10;
const KEY_STEP_FAST = 60;
const HANDLERS = ["dragging", "touchZoom", "doubleClickZoom", "boxZoom", "keyboard", "scrollWheelZoom"];
const STYLE = { color: "#023e8a", weight: 2, dashArray: "6 4", fill: true, fillOpacity: 0.06, interactive: false };

export const PHONE = "(max-width: 700px)";

// Close the side panel on a phone (the toggle button reopens it).
export function panelOutOfTheWay() {
  if (!window.matchMedia(PHONE).matches) return;
  const panel = document.getElementById("panel");
  panel.classList.add("collapsed");
  document.getElementById("panel-toggle").setAttribute("aria-expanded", "false");
}

function hint(text) {
  const el = document.getElementById("draw-hint");
  document.getElementById("draw-hint-text").textContent = text || "";
  el.hidden = !text;
}

const FIRST = "Drag a box, or click two corners (arrow keys and Enter work too; Escape cancels).";
const SECOND = "Now the opposite corner: click it, or move with the arrow keys and press Enter.";

export function drawBox(map, button) {
  return new Promise((resolve) => {
    const container = map.getContainer();
    const disabled = HANDLERS.filter((h) => map[h] && map[h].enabled());
    let first = null; // the first corner
    let press = null; // the pointer press under way: { id, at (container point), setFirst }
    let rect = null;
    let cursor = null; // the keyboard cross: a container point, and its marker
    let cross = null;
    let done = false;

    const latlngOf = (e) => map.mouseEventToLatLng(e);
    const follow = (latlng) => {
      if (!first) return;
      const bounds = L.latLngBounds(first, latlng);
      if (rect) rect.setBounds(bounds);
      else rect = L.rectangle(bounds, STYLE).addTo(map);
    };
    const finish = (bounds) => {
      done = true;
      container.removeEventListener("pointerdown", down, true);
      container.removeEventListener("pointermove", move, true);
      container.removeEventListener("pointerup", up, true);
      container.removeEventListener("pointercancel", cancelPress, true);
      document.removeEventListener("keydown", key, true);
      document.getElementById("draw-cancel").removeEventListener("click", cancel);
      disabled.forEach((h) => map[h].enable());
      if (cross) map.removeLayer(cross);
      hint("");
      // Kept a moment: the click (or tap) that ends a drawing must not also identify a cell or open a site.
      setTimeout(() => { container.classList.remove("drawing"); document.body.classList.remove("drawing-box"); }, 350);
      button.setAttribute("aria-pressed", "false");
      if (rect && !bounds) { map.removeLayer(rect); rect = null; }
      resolve(bounds ? { bounds, rect } : null);
    };
    const cancel = () => finish(null);
    const corner = (latlng) => {
      if (!first) { first = latlng; follow(latlng); hint(SECOND); return; }
      const a = map.latLngToContainerPoint(first);
      const b = map.latLngToContainerPoint(latlng);
      if (Math.abs(a.x - b.x) < CLICK_SLOP || Math.abs(a.y - b.y) < CLICK_SLOP) return; // no area yet
      follow(latlng);
      finish(L.latLngBounds(first, latlng));
    };

    function down(e) {
      if (e.pointerType === "mouse" && e.button !== 0) return;
      if (e.target.closest && e.target.closest(".leaflet-control")) return;
      e.preventDefault(); // no text selection, no native gesture
      e.stopPropagation();
      container.setPointerCapture?.(e.pointerId);
      press = { id: e.pointerId, at: map.mouseEventToContainerPoint(e), setFirst: !first };
      if (!first) { first = latlngOf(e); follow(first); }
    }
    function move(e) {
      if (press && press.id !== e.pointerId) return;
      if (first && (press || e.pointerType === "mouse")) follow(latlngOf(e));
    }
    function up(e) {
      if (!press || press.id !== e.pointerId) return;
      e.preventDefault();
      e.stopPropagation();
      const at = map.mouseEventToContainerPoint(e);
      const dragged = at.distanceTo(press.at) >= CLICK_SLOP;
      const { setFirst } = press;
      press = null;
      if (setFirst && !dragged) { hint(SECOND); return; } // a click: the first corner
      corner(latlngOf(e)); // the end of a drag, or the second click (a box without area waits for another)
      if (!done) hint(SECOND);
    }
    function cancelPress() { press = null; }

    function moveCursor(dx, dy) {
      const size = map.getSize();
      if (!cursor) cursor = first ? map.latLngToContainerPoint(first) : size.divideBy(2).round();
      cursor = L.point(Math.min(size.x - 1, Math.max(0, cursor.x + dx)), Math.min(size.y - 1, Math.max(0, cursor.y + dy)));
      const latlng = map.containerPointToLatLng(cursor);
      if (!cross) {
        cross = L.marker(latlng, { icon: L.divIcon({ className: "box-cursor", iconSize: [22, 22] }),
          interactive: false, keyboard: false }).addTo(map);
      } else cross.setLatLng(latlng);
      follow(latlng);
      return latlng;
    }
    function key(e) {
      const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
      if (e.key === "Escape") { e.preventDefault(); cancel(); return; }
      if (e.target.closest && e.target.closest("input, select, textarea") && e.target !== container) return;
      if (steps[e.key]) {
        const step = e.shiftKey ? KEY_STEP_FAST : KEY_STEP;
        moveCursor(steps[e.key][0] * step, steps[e.key][1] * step);
      } else if (e.key === "Enter" || e.key === " ") {
        corner(moveCursor(0, 0));
      } else return;
      e.preventDefault();
      e.stopPropagation();
    }

    button.setAttribute("aria-pressed", "true");
    container.classList.add("drawing");
    document.body.classList.add("drawing-box");
    disabled.forEach((h) => map[h].disable());
    container.addEventListener("pointerdown", down, true);
    container.addEventListener("pointermove", move, true);
    container.addEventListener("pointerup", up, true);
    container.addEventListener("pointercancel", cancelPress, true);
    document.addEventListener("keydown", key, true);
    document.getElementById("draw-cancel").addEventListener("click", cancel);
    hint(FIRST);
    panelOutOfTheWay();
    container.focus({ preventScroll: true });
  });
}

export function bboxParam(bounds) {
  return [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()].map((v) => v.toFixed(4)).join(",");
}
