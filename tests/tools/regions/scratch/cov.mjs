import fs from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const iso = require('i18n-iso-countries');
const cl = require('countries-list');
console.log('i18n alpha2 count', Object.keys(iso.getAlpha2Codes()).length, 'numeric count', Object.keys(iso.getNumericCodes()).length);
console.log('countries-list count', Object.keys(cl.countries).length, Object.keys(cl.countries).filter(c=>!iso.isValid(c)));
console.log('i18n not in cl', Object.keys(iso.getAlpha2Codes()).filter(c=>!cl.countries[c]));
console.log('continents', JSON.stringify(cl.continents));
const base = process.cwd() + '/node_modules/';
for (const f of ['countries-50m.json','countries-10m.json']) {
  const t = JSON.parse(fs.readFileSync(base+'world-atlas/'+f));
  const have = new Set();
  for (const g of t.objects.countries.geometries) {
    if (g.id===undefined) continue;
    const a2 = iso.numericToAlpha2(g.id);
    if (!a2) console.log('unmapped', g.id, g.properties.name);
    have.add(a2);
  }
  console.log(f, 'missing', Object.keys(iso.getAlpha2Codes()).filter(c=>!have.has(c)).map(c=>c+'('+cl.countries[c]?.name+')').join(' '));
}
