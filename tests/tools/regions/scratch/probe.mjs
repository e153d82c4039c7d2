import fs from 'node:fs';
const buf = fs.readFileSync(new URL('../../../../src/regions/countries.bin', import.meta.url));
let pos = 0;
const u8 = () => buf[pos++];
const varint = () => { let v = 0, m = 1; for (;;) { const b = u8(); v += (b & 127) * m; if (!(b & 128)) return v; m *= 128; } };
const zz = () => { const v = varint(); return v % 2 ? -(v + 1) / 2 : v / 2; };
pos = 5; const S = varint(), PS = varint(), n = varint();
const regions = [];
for (let i = 0; i < n; i++) {
  const code = String.fromCharCode(u8(), u8()); u8(); const flags = u8(); const lat = zz() / PS, lon = zz() / PS;
  const nl = varint(); const name = buf.slice(pos, pos + nl).toString(); pos += nl;
  const rc = varint(); let x = 0, y = 0; const rings = [];
  for (let r = 0; r < rc; r++) { const k = varint(); const ring = []; for (let j = 0; j < k; j++) { x += zz(); y += zz(); ring.push([x, y]); } rings.push(ring); }
  regions.push({ code, name, rings, lat, lon });
}
function contains(rings, px, py) { let inside = false; for (const ring of rings) for (let i = 0; i < ring.length; i++) { const [x1, y1] = ring[i], [x2, y2] = ring[(i + 1) % ring.length]; if ((y1 > py) !== (y2 > py)) { const xi = x1 + ((py - y1) * (x2 - x1)) / (y2 - y1); if (xi < px) inside = !inside; } } return inside; }
export function locate(lat, lon) { return regions.filter(r => contains(r.rings, lon * S, lat * S)).map(r => r.code).join('+') || '-'; }
const args = process.argv.slice(2).map(Number);
if (args.length >= 2) {
  const [lat, lon, step = 0.02, k = 5] = args;
  for (let i = k; i >= -k; i--) { let line = (lat + i * step).toFixed(3).padStart(8) + ' '; for (let j = -k; j <= k; j++) line += locate(lat + i * step, lon + j * step).padEnd(4); console.log(line); }
  console.log('lon from', (lon - k * step).toFixed(3), 'to', (lon + k * step).toFixed(3));
}
export { regions, S };
