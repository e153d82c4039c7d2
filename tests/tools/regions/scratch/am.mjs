import fs from 'node:fs';
import * as topo from 'topojson-client';
const t = JSON.parse(fs.readFileSync('node_modules/world-atlas/countries-50m.json'));
const fc = topo.feature(t, t.objects.countries);
let total=0, rings=0;
for (const f of fc.features) {
  const polys = f.geometry.type==='Polygon'?[f.geometry.coordinates]:f.geometry.coordinates;
  for (const p of polys) for (const r of p) {
    rings++; total+=r.length;
    for (let i=1;i<r.length;i++) if (Math.abs(r[i][0]-r[i-1][0])>180) { console.log('jump', f.properties.name, r[i-1], r[i]); break; }
    const xs=r.map(q=>q[0]); const mn=Math.min(...xs), mx=Math.max(...xs);
    if (mn<=-179.99 || mx>=179.99) console.log('touches am', f.properties.name, mn, mx, Math.min(...r.map(q=>q[1])), r.length);
  }
}
console.log('rings', rings, 'points', total, 'arcs', t.arcs.length, 'arcpoints', t.arcs.reduce((a,b)=>a+b.length,0));
