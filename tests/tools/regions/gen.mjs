#!/usr/bin/env node
// Generates src/regions/countries.bin, the built-in region data of downradar.
//
//   cd tests/tools/regions && npm ci && node gen.mjs
//
// Reads Natural Earth admin-0 polygons (npm `world-atlas`, public domain data)
// plus names/continents (`countries-list`) and the ISO 3166-1 numeric table
// (`i18n-iso-countries`), simplifies them topologically, and writes the compact
// binary read by src/regions.rs. Every data decision taken here is documented
// in src/regions/NOTICE.md; keep the two in sync.
//
// The output is deterministic: running the script twice gives identical bytes.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.resolve(here, '../../../src/regions/countries.bin');

const iso = require('i18n-iso-countries');
const { countries: COUNTRIES_LIST } = require('countries-list');
const ATLAS_DIR = path.dirname(require.resolve('world-atlas/package.json'));

// ---------------------------------------------------------------- parameters

/** Format version; bump together with the decoder in src/regions.rs. */
const FORMAT_VERSION = 1;
/** Polygon vertices are stored in units of 1/1000 degree (about 111 m). */
const COORD_SCALE = 1000;
/** Representative points are stored in units of 1/100000 degree (about 1 m). */
const CENTROID_SCALE = 100000;
/**
 * Douglas-Peucker tolerance in degrees of latitude (about 550 m, the order of
 * the 1:50m source's own resolution); longitude
 * differences are scaled by cos(latitude) so the tolerance is a ground distance.
 */
const TOLERANCE = 0.005;
/**
 * A ring's tolerance never exceeds this fraction of the square root of its area,
 * so that small islands and micro-states keep their shape instead of collapsing.
 */
const SMALL_RING_FRACTION = 0.1;

/** Continent order is the order of the `Continent` enum in src/regions.rs. */
const CONTINENTS = ['AF', 'AN', 'AS', 'EU', 'NA', 'OC', 'SA'];

/** Natural Earth features that carry no ISO numeric id in world-atlas. */
const UNCODED_FEATURES = {
  Kosovo: 'XK', // user-assigned code used by the EU and Unicode CLDR
  'N. Cyprus': 'CY', // not recognised by ISO 3166; the island is CY
  Somaliland: 'SO', // not recognised by ISO 3166; part of SO
  'Siachen Glacier': 'IN', // disputed; administered by India
  'Indian Ocean Ter.': null, // Christmas Island + Cocos (Keeling): carved below
};

/**
 * Territories that Natural Earth merges into a parent feature. A part (polygon
 * of a multipolygon) of `from` whose bounding box lies inside one of the boxes
 * [minLon, minLat, maxLon, maxLat] becomes its own region `code`.
 */
const CARVES = [
  { code: 'GF', from: 'FR', boxes: [[-55, 2, -51, 6.5]] },
  { code: 'GP', from: 'FR', boxes: [[-62, 15.8, -60.9, 16.6]] },
  { code: 'MQ', from: 'FR', boxes: [[-61.3, 14.3, -60.7, 15]] },
  { code: 'RE', from: 'FR', boxes: [[55, -21.5, 56, -20.7]] },
  { code: 'YT', from: 'FR', boxes: [[44.9, -13.1, 45.4, -12.5]] },
  { code: 'SJ', from: 'NO', boxes: [[10, 74, 35, 81], [-9.5, 70.5, -7.5, 71.5]] },
  { code: 'BV', from: 'NO', boxes: [[3, -55, 4, -54]] },
  { code: 'BQ', from: 'NL', boxes: [[-68.5, 11.9, -68.1, 12.4], [-63.4, 17.4, -62.9, 17.7]] },
  { code: 'CX', from: 'Indian Ocean Ter.', boxes: [[105, -11, 106, -10]] },
  { code: 'CC', from: 'Indian Ocean Ter.', boxes: [[96.5, -12.5, 97.2, -11.5]] },
  { code: 'TK', from: 'NZ', boxes: [[-173, -10, -171, -8]] },
];

/**
 * Sources in order. The 1:50m file supplies every region it has; the 1:10m file
 * only the listed regions that are too small to appear at 1:50m. Regions from
 * the 1:10m file may lie on top of a 1:50m neighbour (Gibraltar on Spain), so
 * they are flagged `overlay` and win the lookup.
 */
const SOURCES = [
  { file: 'countries-50m.json', only: null, overlay: false },
  { file: 'countries-10m.json', only: new Set(['BV', 'GI', 'TV', 'UM']), overlay: true },
  { file: 'countries-10m.json', only: null, overlay: false, islands: true },
];

/**
 * The last source adds the islands the 1:50m data leaves out (Helgoland, Lampedusa,
 * Pitcairn, Tristan da Cunha, Rodrigues, ...): a 1:10m part is added to its region when
 * some point of its outline is neither inside a region already built nor within this
 * distance of its own region's outline as the nearest one. The lookup's 12-nautical-mile
 * rule (22.224 km) finds such a point only in the nearest region, which may be a
 * neighbour's coast (Kastellorizo lies 2 km off Turkey); 20 km leaves a margin for the
 * island's own inland points. Parts overlapping a region already built are not added.
 */
const ISLAND_REACH_KM = 20;
const KM_PER_DEGREE = 111.195;

/** Name overrides on top of countries-list, each explained in NOTICE.md. */
const NAME_OVERRIDES = {
  BQ: 'Bonaire, Sint Eustatius and Saba', // the region covers all three islands
};
/** Continent overrides on top of countries-list, each explained in NOTICE.md. */
const CONTINENT_OVERRIDES = {
  RU: 'EU', // UN M49 puts Russia in Eastern Europe; capital and most people are European
};
/**
 * Representative points for regions without any polygon, [lat, lon]. Empty as
 * long as every region has a polygon; the script fails if one is missing.
 */
const POINT_FALLBACKS = {};

// ------------------------------------------------------------------- helpers

const fail = (msg) => {
  console.error(`gen.mjs: ${msg}`);
  process.exit(1);
};
const rad = (deg) => (deg * Math.PI) / 180;

function readTopology(file) {
  const topo = JSON.parse(fs.readFileSync(path.join(ATLAS_DIR, file), 'utf8'));
  const [sx, sy] = topo.transform.scale;
  const [tx, ty] = topo.transform.translate;
  // TopoJSON arcs are delta-encoded quantized positions.
  const arcs = topo.arcs.map((arc) => {
    let x = 0;
    let y = 0;
    const pts = arc.map(([dx, dy]) => {
      x += dx;
      y += dy;
      return [x * sx + tx, y * sy + ty];
    });
    // Unwrap longitudes so an arc crossing the antimeridian stays continuous
    // (e.g. 179.9 -> 180.1 instead of 179.9 -> -179.9); rings are cut back into
    // [-180, 180] after assembly.
    for (let i = 1; i < pts.length; i++) {
      while (pts[i][0] - pts[i - 1][0] > 180) pts[i][0] -= 360;
      while (pts[i][0] - pts[i - 1][0] < -180) pts[i][0] += 360;
    }
    return pts;
  });
  return { arcs, geometries: topo.objects.countries.geometries };
}

/** Concatenates the arcs of a ring, shifting each by 360° to join its predecessor. */
function assembleRing(arcAt, refs) {
  const out = [];
  for (const ref of refs) {
    let pts = ref >= 0 ? arcAt(ref) : arcAt(~ref).slice().reverse();
    if (out.length > 0) {
      const end = out[out.length - 1];
      const shift = Math.round((end[0] - pts[0][0]) / 360) * 360;
      pts = pts.slice(1).map(([x, y]) => [x + shift, y]);
    }
    out.push(...pts);
  }
  return out;
}

/** Planar area in degrees², longitudes scaled by cos(mean latitude). */
function ringArea(pts) {
  let sum = 0;
  let lat = 0;
  for (let i = 0; i < pts.length; i++) {
    const [x1, y1] = pts[i];
    const [x2, y2] = pts[(i + 1) % pts.length];
    sum += x1 * y2 - x2 * y1;
    lat += y1;
  }
  return Math.abs(sum / 2) * Math.cos(rad(lat / pts.length));
}

function bboxOf(pts) {
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of pts) {
    b[0] = Math.min(b[0], x);
    b[1] = Math.min(b[1], y);
    b[2] = Math.max(b[2], x);
    b[3] = Math.max(b[3], y);
  }
  return b;
}

const boxInside = (inner, outer) =>
  inner[0] >= outer[0] && inner[1] >= outer[1] && inner[2] <= outer[2] && inner[3] <= outer[3];

/** Distance from p to segment ab, longitudes scaled by cos(latitude). */
function segmentDistance(p, a, b) {
  const k = Math.cos(rad((a[1] + b[1]) / 2));
  const ax = a[0] * k;
  const bx = b[0] * k;
  const px = p[0] * k;
  const dx = bx - ax;
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy;
  let t = len2 === 0 ? 0 : ((px - ax) * dx + (p[1] - a[1]) * dy) / len2;
  t = Math.max(0, Math.min(1, t));
  return Math.hypot(px - (ax + t * dx), p[1] - (a[1] + t * dy));
}

/** Douglas-Peucker on one arc; end points are always kept so shared arcs stay shared. */
function simplifyArc(pts, tol) {
  const n = pts.length;
  if (n <= 2 || !(tol > 0)) return pts;
  const keep = new Uint8Array(n);
  keep[0] = 1;
  keep[n - 1] = 1;
  const stack = [];
  const closed = pts[0][0] === pts[n - 1][0] && pts[0][1] === pts[n - 1][1];
  if (closed) {
    // A closed arc (a whole island) has no chord; split it at its far point.
    let far = 1;
    let farDist = -1;
    for (let i = 1; i < n - 1; i++) {
      const d = segmentDistance(pts[i], pts[0], pts[0]);
      if (d > farDist) {
        farDist = d;
        far = i;
      }
    }
    keep[far] = 1;
    stack.push([0, far], [far, n - 1]);
  } else {
    stack.push([0, n - 1]);
  }
  while (stack.length > 0) {
    const [a, b] = stack.pop();
    let idx = -1;
    let max = tol;
    for (let i = a + 1; i < b; i++) {
      const d = segmentDistance(pts[i], pts[a], pts[b]);
      if (d > max) {
        max = d;
        idx = i;
      }
    }
    if (idx >= 0) {
      keep[idx] = 1;
      stack.push([a, idx], [idx, b]);
    }
  }
  return pts.filter((_, i) => keep[i] === 1);
}

/** Sutherland-Hodgman clip of a ring against one vertical half-plane. */
function clipHalf(ring, x0, keepRight) {
  const inside = (p) => (keepRight ? p[0] >= x0 : p[0] <= x0);
  const cross = (a, b) => [x0, a[1] + ((x0 - a[0]) * (b[1] - a[1])) / (b[0] - a[0])];
  const out = [];
  for (let i = 0; i < ring.length; i++) {
    const cur = ring[i];
    const prev = ring[(i + ring.length - 1) % ring.length];
    if (inside(cur)) {
      if (!inside(prev)) out.push(cross(prev, cur));
      out.push(cur);
    } else if (inside(prev)) {
      out.push(cross(prev, cur));
    }
  }
  return out;
}

/**
 * Turns an assembled ring (closed, longitudes unwrapped) into rings inside
 * [-180, 180]. Returns [{ window, ring }], `window` being the 360° period the
 * piece came from, so holes can be grouped with their exterior.
 */
function normalizeRing(pts, label) {
  const n = pts.length;
  const winding = pts[n - 1][0] - pts[0][0];
  let ring;
  if (Math.abs(winding) < 1e-9) {
    ring = pts.slice(0, -1);
  } else if (Math.abs(Math.abs(winding) - 360) < 1e-6) {
    // The ring goes once around a pole (Antarctica). Natural Earth pairs it with
    // a degenerate ring along the pole itself: drop that one, and close the real
    // one through the pole so that it becomes an ordinary planar polygon.
    if (pts.every(([, y]) => Math.abs(y) > 89.99)) return [];
    const pole = pts.reduce((s, [, y]) => s + y, 0) < 0 ? -90 : 90;
    ring = pts.slice(0, -1).concat([
      [pts[n - 1][0], pole],
      [pts[0][0], pole],
    ]);
  } else {
    fail(`${label}: ring does not close (winding ${winding})`);
  }
  const [minX, , maxX] = bboxOf(ring);
  const first = Math.floor((minX + 180) / 360);
  const last = Math.ceil((maxX + 180) / 360) - 1;
  const pieces = [];
  for (let w = first; w <= last; w++) {
    let piece = ring;
    if (first !== last) {
      piece = clipHalf(clipHalf(ring, -180 + 360 * w, true), 180 + 360 * w, false);
    }
    if (piece.length >= 3) pieces.push({ window: w, ring: piece.map(([x, y]) => [x - 360 * w, y]) });
  }
  return pieces;
}

/** Rounds a ring to the storage grid; null if nothing with an area is left. */
function quantizeRing(ring) {
  const out = [];
  for (const [x, y] of ring) {
    const q = [
      Math.max(-180 * COORD_SCALE, Math.min(180 * COORD_SCALE, Math.round(x * COORD_SCALE))),
      Math.max(-90 * COORD_SCALE, Math.min(90 * COORD_SCALE, Math.round(y * COORD_SCALE))),
    ];
    const prev = out[out.length - 1];
    if (!prev || prev[0] !== q[0] || prev[1] !== q[1]) out.push(q);
  }
  while (out.length > 1 && out[0][0] === out[out.length - 1][0] && out[0][1] === out[out.length - 1][1]) {
    out.pop();
  }
  if (out.length < 3) return null;
  let twiceArea = 0;
  for (let i = 0; i < out.length; i++) {
    const [x1, y1] = out[i];
    const [x2, y2] = out[(i + 1) % out.length];
    twiceArea += x1 * y2 - x2 * y1;
  }
  return twiceArea === 0 ? null : out;
}

// ------------------------------------------- point in polygon (as in Rust)

/**
 * Even-odd test over all rings of a region, in storage units. This is the
 * exact rule of `Shape::contains` in src/regions.rs: count the edges that
 * straddle the horizontal line through the point (half-open in y) and cross it
 * strictly west of the point.
 */
function containsUnits(rings, px, py) {
  let inside = false;
  for (const ring of rings) {
    for (let i = 0; i < ring.length; i++) {
      const [x1, y1] = ring[i];
      const [x2, y2] = ring[(i + 1) % ring.length];
      if (y1 > py !== y2 > py) {
        const xi = x1 + ((py - y1) * (x2 - x1)) / (y2 - y1);
        if (xi < px) inside = !inside;
      }
    }
  }
  return inside;
}

// -------------------------------------------------- pole of inaccessibility

/** Smallest distance from (x, y) to any edge, longitudes scaled by k. */
function edgeDistance(rings, x, y, k) {
  let best = Infinity;
  for (const ring of rings) {
    for (let i = 0; i < ring.length; i++) {
      const a = ring[i];
      const b = ring[(i + 1) % ring.length];
      const ax = a[0] * k;
      const bx = b[0] * k;
      const dx = bx - ax;
      const dy = b[1] - a[1];
      const len2 = dx * dx + dy * dy;
      let t = len2 === 0 ? 0 : ((x * k - ax) * dx + (y - a[1]) * dy) / len2;
      t = Math.max(0, Math.min(1, t));
      const d = Math.hypot(x * k - (ax + t * dx), y - (a[1] + t * dy));
      if (d < best) best = d;
    }
  }
  return best;
}

/**
 * Polylabel (Mapbox's grid search for the pole of inaccessibility) restricted
 * to `bbox`, scoring points against all rings of the region (degrees).
 */
function poleOfInaccessibility(rings, bbox) {
  const k = Math.cos(rad((bbox[1] + bbox[3]) / 2));
  const signed = (x, y) => {
    const d = edgeDistance(rings, x, y, k);
    return containsUnits(rings, x, y) ? d : -d;
  };
  // Cells are squares in the scaled plane: `h` is half the side in latitude
  // degrees, h / k in longitude degrees.
  const cell = (x, y, h) => {
    const d = signed(x, y);
    return { x, y, h, d, max: d + h * Math.SQRT2 };
  };
  const width = (bbox[2] - bbox[0]) * k;
  const height = bbox[3] - bbox[1];
  const size = Math.min(width, height);
  const precision = Math.max(size / 1000, 1e-5);
  let best = cell((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, 0);
  if (size === 0) return [best.y, best.x];
  const heap = [];
  const push = (c) => {
    heap.push(c);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p].max >= heap[i].max) break;
      [heap[p], heap[i]] = [heap[i], heap[p]];
      i = p;
    }
  };
  const pop = () => {
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && heap[l].max > heap[m].max) m = l;
        if (r < heap.length && heap[r].max > heap[m].max) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i], heap[m]];
        i = m;
      }
    }
    return top;
  };
  const h0 = size / 2;
  for (let y = 0; y < height; y += size) {
    for (let x = 0; x < width; x += size) {
      push(cell(bbox[0] + (x + h0) / k, bbox[1] + y + h0, h0));
    }
  }
  while (heap.length > 0) {
    const c = pop();
    if (c.d > best.d) best = c;
    if (c.max - best.d <= precision) continue;
    const h = c.h / 2;
    push(cell(c.x - h / k, c.y - h, h));
    push(cell(c.x + h / k, c.y - h, h));
    push(cell(c.x - h / k, c.y + h, h));
    push(cell(c.x + h / k, c.y + h, h));
  }
  return [best.y, best.x];
}

// ------------------------------------------------ reach of the regions built

/**
 * For the regions built so far: whether a point [lon, lat] (degrees) is inside one of
 * them, and which region's outline is nearest within ISLAND_REACH_KM (null if none), by
 * a grid of 1° cells holding the edges that pass through them.
 */
function reachOf(built) {
  const reachDeg = ISLAND_REACH_KM / KM_PER_DEGREE;
  const grid = new Map();
  const rings = [];
  for (const [code, region] of built) {
    for (const ring of region.parts.flatMap((p) => p.rings)) {
      const deg = ring.map(([x, y]) => [x / COORD_SCALE, y / COORD_SCALE]);
      rings.push({ code, units: ring, bbox: bboxOf(deg) });
      for (let i = 0; i < deg.length; i++) {
        const a = deg[i];
        const b = deg[(i + 1) % deg.length];
        for (let cx = Math.floor(Math.min(a[0], b[0])); cx <= Math.floor(Math.max(a[0], b[0])); cx++) {
          for (let cy = Math.floor(Math.min(a[1], b[1])); cy <= Math.floor(Math.max(a[1], b[1])); cy++) {
            const key = `${cx},${cy}`;
            if (!grid.has(key)) grid.set(key, []);
            grid.get(key).push({ code, a, b });
          }
        }
      }
    }
  }
  return {
    inside([x, y]) {
      const [ux, uy] = [x * COORD_SCALE, y * COORD_SCALE];
      return rings.some(
        (r) => x >= r.bbox[0] && x <= r.bbox[2] && y >= r.bbox[1] && y <= r.bbox[3] && containsUnits([r.units], ux, uy),
      );
    },
    nearest([x, y]) {
      const dLon = reachDeg / Math.max(Math.cos(rad(Math.min(Math.abs(y) + reachDeg, 89.9))), 1e-3);
      let best = null;
      let bestDist = reachDeg;
      for (let cy = Math.floor(y - reachDeg); cy <= Math.floor(y + reachDeg); cy++) {
        for (let c = Math.floor(x - dLon); c <= Math.floor(x + dLon); c++) {
          const cx = ((((c + 180) % 360) + 360) % 360) - 180;
          const shift = c - cx; // a cell across the antimeridian: compare in the point's frame
          for (const { code, a, b } of grid.get(`${cx},${cy}`) ?? []) {
            const d = segmentDistance([x, y], [a[0] + shift, a[1]], [b[0] + shift, b[1]]);
            if (d <= bestDist) {
              bestDist = d;
              best = code;
            }
          }
        }
      }
      return best;
    },
  };
}

// ---------------------------------------------------------------- pipeline

const OFFICIAL = Object.keys(iso.getAlpha2Codes()).sort();
if (OFFICIAL.length !== 250 || !OFFICIAL.includes('XK')) {
  fail(`expected 249 ISO codes plus XK from i18n-iso-countries, got ${OFFICIAL.length}`);
}

/** code -> { overlay, parts: [{ rings (storage units), area (deg²), bbox (degrees) }] } */
const regions = new Map();

for (const source of SOURCES) {
  const { arcs, geometries } = readTopology(source.file);
  const rawArc = (i) => arcs[i];

  // 1. Which part goes to which region.
  let assigned = []; // { code, rings: [[arc refs]] }
  for (const g of geometries) {
    const name = g.properties.name;
    let base;
    if (g.id !== undefined) {
      base = iso.numericToAlpha2(g.id);
      if (!base) fail(`${source.file}: no alpha-2 code for numeric id ${g.id} (${name})`);
    } else if (name in UNCODED_FEATURES) {
      base = UNCODED_FEATURES[name] ?? name;
    } else if (source.only || source.islands) {
      continue; // a finer source only supplies the listed regions, or islands
    } else {
      fail(`${source.file}: feature "${name}" has no id and no decision in UNCODED_FEATURES`);
    }
    const parts = g.type === 'Polygon' ? [g.arcs] : g.type === 'MultiPolygon' ? g.arcs : [];
    for (const part of parts) {
      const box = bboxOf(assembleRing(rawArc, part[0]));
      const carve = CARVES.find((c) => c.from === base && c.boxes.some((b) => boxInside(box, b)));
      const code = carve ? carve.code : base;
      if (!OFFICIAL.includes(code)) fail(`${source.file}: part of "${name}" has no region code`);
      if (source.only && !source.only.has(code)) continue;
      assigned.push({ code, rings: part });
    }
  }

  if (source.islands) {
    const reach = reachOf(regions);
    assigned = assigned.filter(({ code, rings }) => {
      const outline = assembleRing(rawArc, rings[0]).map(([x, y]) => [((((x + 180) % 360) + 360) % 360) - 180, y]);
      if (outline.some((p) => reach.inside(p))) return false;
      return outline.some((p) => reach.nearest(p) !== code);
    });
    const codes = [...new Set(assigned.map((a) => a.code))].sort();
    console.log(`note: ${assigned.length} islands from ${source.file} in ${codes.length} regions`);
  }

  // 2. Per-arc tolerance: the smallest that any ring using the arc asks for.
  const tolerance = new Map();
  for (const { rings } of assigned) {
    for (const refs of rings) {
      const ring = assembleRing(rawArc, refs);
      // A ring around a pole has no planar area; it is large anyway.
      const aroundPole = Math.abs(ring[ring.length - 1][0] - ring[0][0]) > 1;
      const area = aroundPole ? Infinity : ringArea(ring);
      const tol = Math.min(TOLERANCE, SMALL_RING_FRACTION * Math.sqrt(area));
      for (const ref of refs) {
        const arc = ref >= 0 ? ref : ~ref;
        tolerance.set(arc, Math.min(tolerance.get(arc) ?? Infinity, tol));
      }
    }
  }
  const simplified = new Map();
  for (const [arc, tol] of tolerance) simplified.set(arc, simplifyArc(arcs[arc], tol));
  const simpleArc = (i) => simplified.get(i);

  // 3. Assemble, cut at the antimeridian, quantize.
  for (const { code, rings } of assigned) {
    if (source.only === null && SOURCES.some((s) => s.only?.has(code))) {
      fail(`${code} comes from both ${source.file} and a finer source`);
    }
    const byWindow = new Map();
    for (const refs of rings) {
      const assembled = assembleRing(simpleArc, refs);
      const aroundPole = assembled[assembled.length - 1][0] !== assembled[0][0];
      if (assembled.length < 4 && !aroundPole) {
        // Fewer than three distinct points: an islet that is a line in the source.
        console.log(`note: ${code} (${source.file}): dropped a ring with no area in the source`);
        continue;
      }
      for (const { window, ring } of normalizeRing(assembled, code)) {
        const q = quantizeRing(ring);
        if (!q) {
          // An islet narrower than the storage grid: reported, not fatal.
          console.log(`note: ${code} (${source.file}): dropped a ring with no area at 1/${COORD_SCALE}°`);
          continue;
        }
        if (!byWindow.has(window)) byWindow.set(window, []);
        byWindow.get(window).push(q);
      }
    }
    if (!regions.has(code)) regions.set(code, { overlay: source.overlay, parts: [] });
    const region = regions.get(code);
    for (const qrings of byWindow.values()) {
      const deg = qrings.map((r) => r.map(([x, y]) => [x / COORD_SCALE, y / COORD_SCALE]));
      // The even-odd rule does not need to know which ring is the exterior,
      // but the part's area does: the largest ring minus the others (holes).
      const areas = deg.map(ringArea);
      const outer = areas.indexOf(Math.max(...areas));
      const area = 2 * areas[outer] - areas.reduce((s, a) => s + a, 0);
      region.parts.push({ rings: qrings, area, bbox: bboxOf(deg[outer]) });
    }
  }
}

// 4. Names, continents, representative points; checks.
const entries = [];
const overlayCodes = [...regions].filter(([, r]) => r.overlay).map(([c]) => c);
for (const code of OFFICIAL) {
  const info = COUNTRIES_LIST[code];
  if (!info) fail(`countries-list has no entry for ${code}`);
  const name = NAME_OVERRIDES[code] ?? info.name;
  const continent = CONTINENT_OVERRIDES[code] ?? info.continent;
  if (!CONTINENTS.includes(continent)) fail(`${code}: unknown continent ${continent}`);
  const region = regions.get(code);
  let rings = [];
  let point;
  if (region && region.parts.length > 0) {
    rings = region.parts.flatMap((p) => p.rings);
    const largest = region.parts.reduce((a, b) => (b.area > a.area ? b : a));
    const degRings = rings.map((r) => r.map(([x, y]) => [x / COORD_SCALE, y / COORD_SCALE]));
    const [lat, lon] = poleOfInaccessibility(degRings, largest.bbox);
    point = [Math.round(lat * CENTROID_SCALE), Math.round(lon * CENTROID_SCALE)];
    const [ux, uy] = [(point[1] / CENTROID_SCALE) * COORD_SCALE, (point[0] / CENTROID_SCALE) * COORD_SCALE];
    if (!containsUnits(rings, ux, uy)) fail(`${code}: representative point ${point} is outside the region`);
    if (!region.overlay) {
      for (const other of overlayCodes) {
        const o = regions.get(other).parts.flatMap((p) => p.rings);
        if (containsUnits(o, ux, uy)) fail(`${code}: representative point lies in overlay ${other}`);
      }
    }
  } else if (POINT_FALLBACKS[code]) {
    const [lat, lon] = POINT_FALLBACKS[code];
    point = [Math.round(lat * CENTROID_SCALE), Math.round(lon * CENTROID_SCALE)];
  } else {
    fail(`${code} (${name}) has no polygon and no entry in POINT_FALLBACKS`);
  }
  entries.push({ code, name, continent, overlay: region?.overlay ?? false, point, rings });
}
for (const code of regions.keys()) {
  if (!OFFICIAL.includes(code)) fail(`polygon for unknown code ${code}`);
}

// 5. Encode.
const bytes = [];
const u8 = (v) => bytes.push(v & 0xff);
const varint = (v) => {
  if (!Number.isSafeInteger(v) || v < 0) fail(`varint out of range: ${v}`);
  while (v >= 0x80) {
    u8((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  u8(v);
};
const zigzag = (v) => varint(v >= 0 ? 2 * v : -2 * v - 1);

for (const c of 'DRRG') u8(c.charCodeAt(0));
u8(FORMAT_VERSION);
varint(COORD_SCALE);
varint(CENTROID_SCALE);
varint(entries.length);
let ringCount = 0;
let pointCount = 0;
for (const e of entries) {
  u8(e.code.charCodeAt(0));
  u8(e.code.charCodeAt(1));
  u8(CONTINENTS.indexOf(e.continent));
  u8((e.rings.length > 0 ? 1 : 0) | (e.overlay ? 2 : 0));
  zigzag(e.point[0]);
  zigzag(e.point[1]);
  const name = Buffer.from(e.name, 'utf8');
  varint(name.length);
  for (const b of name) u8(b);
  varint(e.rings.length);
  // Deltas run on across the rings of a region, starting from (0, 0).
  let px = 0;
  let py = 0;
  for (const ring of e.rings) {
    varint(ring.length);
    for (const [x, y] of ring) {
      zigzag(x - px);
      zigzag(y - py);
      px = x;
      py = y;
    }
    ringCount += 1;
    pointCount += ring.length;
  }
}

fs.mkdirSync(path.dirname(OUT), { recursive: true });
fs.writeFileSync(OUT, Buffer.from(bytes));
if (process.argv.includes('--list')) {
  // Review aid: one line per region.
  for (const e of entries) {
    const points = e.rings.reduce((s, r) => s + r.length, 0);
    const [lat, lon] = e.point.map((v) => (v / CENTROID_SCALE).toFixed(5));
    console.log(`${e.code}\t${e.continent}\t${lat}\t${lon}\t${e.rings.length}\t${points}\t${e.overlay ? 'overlay' : ''}\t${e.name}`);
  }
}
const withoutPolygon = entries.filter((e) => e.rings.length === 0).map((e) => e.code);
console.log(
  `wrote ${path.relative(process.cwd(), OUT)}: ${bytes.length} bytes, ${entries.length} regions, ` +
    `${ringCount} rings, ${pointCount} points; without polygon: ${withoutPolygon.join(' ') || 'none'}`,
);
