// A Mapbox vector tile (protobuf, spec 2.1) decoded into layers of features with points and properties.

import { PbfReader } from "/vendor/pbf/index.js";

function readValue(tag, value, pbf) {
  if (tag === 1) value.v = pbf.readString();
  else if (tag === 2) value.v = pbf.readFloat();
  else if (tag === 3) value.v = pbf.readDouble();
  else if (tag === 4) value.v = pbf.readVarint(true);
  else if (tag === 5) value.v = pbf.readVarint();
  else if (tag === 6) value.v = pbf.readSVarint();
  else if (tag === 7) value.v = pbf.readBoolean();
}

function readFeature(tag, feature, pbf) {
  if (tag === 1) feature.id = pbf.readVarint();
  else if (tag === 2) pbf.readPackedVarint(feature.tags);
  else if (tag === 3) feature.type = pbf.readVarint();
  else if (tag === 4) pbf.readPackedVarint(feature.geometry);
}

function readLayer(tag, layer, pbf) {
  if (tag === 1) layer.name = pbf.readString();
  else if (tag === 2) layer.raw.push(pbf.readMessage(readFeature, { id: undefined, tags: [], type: 0, geometry: [] }));
  else if (tag === 3) layer.keys.push(pbf.readString());
  else if (tag === 4) layer.values.push(pbf.readMessage(readValue, { v: null }).v);
  else if (tag === 5) layer.extent = pbf.readVarint();
}

const zigzag = (n) => (n >>> 1) ^ -(n & 1);

// The vertices of a feature's geometry commands (MoveTo and LineTo), in tile coordinates 0..extent.
export function points(geometry) {
  const out = [];
  let x = 0;
  let y = 0;
  for (let i = 0; i < geometry.length;) {
    const command = geometry[i] & 7;
    const count = geometry[i] >> 3;
    i += 1;
    if (command !== 1 && command !== 2) continue; // ClosePath has no parameters
    for (let k = 0; k < count; k += 1) {
      x += zigzag(geometry[i]);
      y += zigzag(geometry[i + 1]);
      i += 2;
      out.push([x, y]);
    }
  }
  return out;
}

// { layerName: { extent, features: [{ id, type, properties, points }] } } of a tile's bytes.
export function decodeTile(buffer) {
  const pbf = new PbfReader(new Uint8Array(buffer));
  const layers = {};
  pbf.readFields((tag, _, reader) => {
    if (tag !== 3) return;
    const layer = reader.readMessage(readLayer, { name: "", extent: 4096, keys: [], values: [], raw: [] });
    layers[layer.name] = {
      extent: layer.extent,
      features: layer.raw.map((f) => {
        const properties = {};
        for (let i = 0; i + 1 < f.tags.length; i += 2) properties[layer.keys[f.tags[i]]] = layer.values[f.tags[i + 1]];
        return { id: f.id, type: f.type, properties, points: points(f.geometry) };
      }),
    };
  }, null);
  return layers;
}
