import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const iso = require('i18n-iso-countries');
iso.registerLocale(require('i18n-iso-countries/langs/en.json'));
const cl = require('countries-list');
for (const c of Object.keys(iso.getAlpha2Codes()).sort()) {
  const a = cl.countries[c]; const b = iso.getName(c,'en',{select:'official'}); const s = iso.getName(c,'en',{select:'alias'});
  if (a.name !== b) console.log(c, a.continent, JSON.stringify(a.name), '|', JSON.stringify(b), '|', JSON.stringify(s), iso.alpha2ToNumeric(c));
}
console.log(JSON.stringify(cl.countries.CY), JSON.stringify(cl.countries.RU), JSON.stringify(cl.countries.XK));
const byc = {}; for (const [c,v] of Object.entries(cl.countries)) { byc[v.continent] = (byc[v.continent]||0)+1; if (Array.isArray(v.continent)|| typeof v.continent !== 'string') console.log('weird', c, v.continent); }
console.log(byc);
