import fs from 'node:fs';
import * as topo from 'topojson-client';
const want = process.argv.slice(3);
const t = JSON.parse(fs.readFileSync('node_modules/world-atlas/'+process.argv[2]));
const fc = topo.feature(t, t.objects.countries);
for (const f of fc.features) {
  if (!want.includes(f.properties.name)) continue;
  const polys = f.geometry.type==='Polygon'?[f.geometry.coordinates]:f.geometry.coordinates;
  console.log(f.properties.name, f.id, polys.length, 'parts');
  for (const p of polys) { const r=p[0]; const xs=r.map(q=>q[0]), ys=r.map(q=>q[1]);
    console.log('  ', Math.min(...xs).toFixed(2), Math.max(...xs).toFixed(2), Math.min(...ys).toFixed(2), Math.max(...ys).toFixed(2), 'n', r.length, 'holes', p.length-1); }
}
