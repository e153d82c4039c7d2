import fs from 'node:fs';
import * as topo from 'topojson-client';
for (const file of ['countries-50m.json','countries-10m.json']) {
const t = JSON.parse(fs.readFileSync('node_modules/world-atlas/'+file));
const fc = topo.feature(t, t.objects.countries);
for (const f of fc.features) {
  const polys = f.geometry.type==='Polygon'?[f.geometry.coordinates]:f.geometry.coordinates;
  polys.forEach((p,pi)=> p.forEach((r,ri)=>{
    let w=0, jumps=[];
    for (let i=1;i<r.length;i++){ let d=r[i][0]-r[i-1][0]; if(d>180){d-=360;jumps.push(i)} else if(d<-180){d+=360;jumps.push(i)} w+=d; }
    if (jumps.length) console.log(file, f.properties.name, pi, ri, 'len', r.length, 'winding', w.toFixed(3), 'jumps', jumps.map(i=>JSON.stringify([r[i-1],r[i]])).join(' '));
  }));
}
}
