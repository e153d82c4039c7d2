import fs from 'node:fs';
import * as topo from 'topojson-client';
const base = process.cwd() + '/node_modules/';
for (const f of ['countries-50m.json','countries-10m.json']) {
  const t = JSON.parse(fs.readFileSync(base+'world-atlas/'+f));
  const geoms = t.objects.countries.geometries;
  console.log(f, geoms.length, 'transform', JSON.stringify(t.transform));
  const noid = geoms.filter(g=>g.id===undefined || g.id==='-99' || !/^\d+$/.test(g.id));
  console.log('no id:', noid.map(g=>g.properties.name+':'+g.id+':'+g.type).join(', '));
  const ids = {};
  for (const g of geoms) { ids[g.id] = (ids[g.id]||[]).concat(g.properties.name); }
  console.log('dups:', JSON.stringify(Object.entries(ids).filter(([k,v])=>v.length>1)));
  console.log('nullgeom:', geoms.filter(g=>!g.type||g.type===null).map(g=>g.properties.name));
}
