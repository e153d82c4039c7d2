//! The built-in regions: every ISO 3166-1 alpha-2 country, and coordinates to country.
//!
//! This module owns the list of regions reports can be counted in: the 249 officially
//! assigned ISO 3166-1 alpha-2 codes plus `XK` (Kosovo, the user-assigned code used by the
//! EU and Unicode CLDR), each with an English name, a continent, a representative point and
//! a polygon. It turns a code given by a client into a [`RegionCode`] and a location into the
//! country that contains it ([`Regions::locate`]). [`DaylightSaving`] says which daylight
//! saving rule each region's clocks follow and when it is in force.
//!
//! # Data
//!
//! The polygons are Natural Earth's admin-0 countries (public domain) at 1:50m, taken from
//! the npm package `world-atlas`; a few territories too small for 1:50m (Gibraltar, Tuvalu,
//! the U.S. Minor Outlying Islands, Bouvet Island) come from the 1:10m edition. Names and
//! continents come from `countries-list`, numeric to alpha-2 codes from `i18n-iso-countries`
//! (both MIT). The generator `tests/tools/regions/gen.mjs` carves territories that Natural
//! Earth merges into a parent (French Guiana out of France, Svalbard out of Norway, ...),
//! simplifies the borders topologically (neighbours keep identical borders, so there are no
//! gaps or overlaps along them), cuts rings at the antimeridian, and writes
//! `src/regions/countries.bin`. `src/regions/NOTICE.md` lists sources, versions, licences,
//! every data decision and the command that regenerates the file.
//!
//! The file format is: the magic `DRRG`, a version byte, the coordinate and representative
//! point scales (units per degree), the region count, then per region, sorted by code: the
//! code, continent, flags, representative point, name and rings. Ring vertices are integer
//! coordinates (1/1000 degree) stored as zigzag LEB128 varint deltas, so the whole world
//! takes about 250 KB. It is embedded with `include_bytes!` and decoded once, on first use.
//!
//! # Index
//!
//! Rings lie within longitudes -180..=180: a ring crossing the antimeridian (Russia, Fiji)
//! is stored as two rings meeting at ±180, so planar geometry is exact. A point is inside a
//! region when a ray from it to the west crosses the region's rings an odd number of times
//! (holes and enclaves, such as Lesotho in South Africa, need nothing special).
//!
//! - Each region's edges are bucketed by latitude band (0.1°) and sorted by their west end,
//!   so a ray test reads only the edges that can cross its latitude west of the point.
//! - A grid of 1°×1° cells over the world records, per cell, either "no region" (open sea),
//!   "entirely inside region X" (answered without geometry), or the short list of regions
//!   whose border runs through the cell plus the region the rest of the cell lies in.
//! - A point in no region but within [`COASTAL_WATERS_KM`] (12 nautical miles) of a border
//!   belongs to the nearest region; each cell lists the borders within that reach of it.
//!
//! Most lookups are answered by the grid alone; the rest test a handful of edges, about
//! 0.1 µs on average (`cargo bench --bench regions`). Decoding and building the index takes
//! about 40 ms and some 7 MB, once per process: call [`Regions::builtin`] at startup so the
//! first request does not pay for it.

mod dst;

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

pub use dst::DaylightSaving;

/// The generated region data; see the module docs and `src/regions/NOTICE.md`.
static DATA: &[u8] = include_bytes!("regions/countries.bin");

const FORMAT_VERSION: u8 = 1;
/// Grid cells are one degree on each side.
const GRID_COLS: usize = 360;
const GRID_ROWS: usize = 180;
/// Latitude bands of the per-region edge index are a tenth of a grid cell high.
const BANDS_PER_DEGREE: i32 = 10;
/// A point at sea this close to a region's border belongs to the nearest region: 12 nautical
/// miles, the breadth of the territorial sea (UNCLOS art. 3). Besides ships and ferries this
/// covers the generalisation of the 1:50m coastlines, which puts parts of coastal cities
/// (Manhattan, Copenhagen, Monaco, atolls such as Funafuti) just off the shore.
pub const COASTAL_WATERS_KM: f64 = 22.224;
/// Kilometres per degree of latitude (and of longitude at the equator), mean Earth radius.
const KM_PER_DEGREE: f64 = 111.195;
/// How much of a malformed input is echoed back in the error.
const MAX_ECHO_CHARS: usize = 16;

/// Two-letter ISO 3166-1 alpha-2 code of a built-in region, e.g. `DE`.
///
/// Every value names a built-in region: the only ways to get one are [`RegionCode::parse`]
/// (and its `FromStr` and `Deserialize` forms) and the [`Regions`] accessors.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionCode([u8; 2]);

impl RegionCode {
    /// Parses a region code: exactly two ASCII letters in either case (`"de"` is `DE`) that
    /// name a built-in region.
    pub fn parse(s: &str) -> Result<Self, RegionError> {
        let code = match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                RegionCode([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => {
                return Err(RegionError::Malformed(crate::text::quoted(
                    s,
                    MAX_ECHO_CHARS,
                )));
            }
        };
        if Regions::builtin().index_of(code).is_none() {
            return Err(RegionError::Unknown(code.as_str().to_owned()));
        }
        Ok(code)
    }

    /// The code as upper-case text, e.g. `"DE"`.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).expect("region codes are ASCII letters")
    }
}

impl FromStr for RegionCode {
    type Err = RegionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RegionCode").field(&self.as_str()).finish()
    }
}

impl Serialize for RegionCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Validates like [`RegionCode::parse`], so a deserialized code is always a built-in region.
impl<'de> Deserialize<'de> for RegionCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for RegionCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Z]{2}$"))
            .description(Some(
                "ISO 3166-1 alpha-2 code of a built-in region (a country or territory), \
                 e.g. `DE`; `XK` is Kosovo. Input is case-insensitive.",
            ))
            .examples([serde_json::json!("DE")])
            .into()
    }
}

impl utoipa::ToSchema for RegionCode {}

/// Why a region code was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegionError {
    /// Not two ASCII letters. Holds the input quoted and escaped (its first characters if it
    /// is long).
    #[error(
        "malformed region code {0}: expected two letters, an ISO 3166-1 alpha-2 country code such as \"DE\""
    )]
    Malformed(String),
    /// Two letters, but no built-in region has that code. Holds the upper-cased code.
    #[error("unknown region \"{0}\": expected an ISO 3166-1 alpha-2 country code such as \"DE\"")]
    Unknown(String),
}

/// A continent, as used by ISO 3166-based country lists.
///
/// Serialized as its two-letter code: `AF`, `AN`, `AS`, `EU`, `NA`, `OC` or `SA`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum Continent {
    #[serde(rename = "AF")]
    Africa,
    #[serde(rename = "AN")]
    Antarctica,
    #[serde(rename = "AS")]
    Asia,
    #[serde(rename = "EU")]
    Europe,
    #[serde(rename = "NA")]
    NorthAmerica,
    #[serde(rename = "OC")]
    Oceania,
    #[serde(rename = "SA")]
    SouthAmerica,
}

impl Continent {
    /// In the order of the data file's continent byte.
    const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    /// The two-letter code, e.g. `"NA"`.
    pub fn code(&self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }

    /// The English name, e.g. `"North America"`.
    pub fn name(&self) -> &'static str {
        match self {
            Continent::Africa => "Africa",
            Continent::Antarctica => "Antarctica",
            Continent::Asia => "Asia",
            Continent::Europe => "Europe",
            Continent::NorthAmerica => "North America",
            Continent::Oceania => "Oceania",
            Continent::SouthAmerica => "South America",
        }
    }
}

/// A WGS84 point. Constructed only through [`Coordinates::new`], so it is always valid.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Coordinates {
    lat: f64,
    lon: f64,
}

impl Coordinates {
    /// A point from latitude and longitude in degrees: latitude within -90..=90, longitude
    /// within -180..=180, both finite.
    pub fn new(lat: f64, lon: f64) -> Result<Self, CoordinatesError> {
        if !lat.is_finite() {
            return Err(CoordinatesError::LatitudeNotFinite(lat));
        }
        if !lon.is_finite() {
            return Err(CoordinatesError::LongitudeNotFinite(lon));
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(CoordinatesError::LatitudeOutOfRange(lat));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(CoordinatesError::LongitudeOutOfRange(lon));
        }
        Ok(Self { lat, lon })
    }

    /// Latitude in degrees, north positive.
    pub fn lat(&self) -> f64 {
        self.lat
    }

    /// Longitude in degrees, east positive.
    pub fn lon(&self) -> f64 {
        self.lon
    }
}

/// Why coordinates were rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CoordinatesError {
    #[error("latitude must be a finite number of degrees, got {0}")]
    LatitudeNotFinite(f64),
    #[error("longitude must be a finite number of degrees, got {0}")]
    LongitudeNotFinite(f64),
    #[error("latitude {} is out of range: expected -90 to 90 degrees", degrees(*.0))]
    LatitudeOutOfRange(f64),
    #[error("longitude {} is out of range: expected -180 to 180 degrees", degrees(*.0))]
    LongitudeOutOfRange(f64),
}

/// A number of degrees as a message shows it: as written when it is ordinary, in scientific
/// notation when huge or tiny (`1e308` is not echoed as 309 digits).
pub fn degrees(x: f64) -> String {
    if x == 0.0 || (1e-6..1e6).contains(&x.abs()) {
        x.to_string()
    } else {
        format!("{x:e}")
    }
}

/// One built-in region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Country {
    pub code: RegionCode,
    /// English short name, e.g. "Germany".
    pub name: &'static str,
    pub continent: Continent,
    /// A representative point: for regions with a polygon, the pole of inaccessibility of
    /// their largest part, so it is well inside the region (`locate` returns the region).
    pub centroid: Coordinates,
    /// False for a region whose territory is too small for the source data; such a region is
    /// a valid code but `locate` never returns it.
    pub has_polygon: bool,
}

/// The built-in regions and their location index; see the module docs.
pub struct Regions {
    /// Sorted by code.
    countries: Vec<Country>,
    /// Index into `countries` by [`code_slot`]; `u16::MAX` where no region has that code.
    by_code: Vec<u16>,
    shapes: Vec<Shape>,
    /// Per shape, `band_count + 1` offsets into `edges`.
    band_offsets: Vec<u32>,
    /// The edges of all shapes, grouped by shape and band, each group sorted by west end.
    edges: Vec<Edge>,
    /// `GRID_ROWS * GRID_COLS` cells, row-major from the south-west corner.
    cells: Vec<Cell>,
    /// The lists referenced by [`Cell::Mixed`].
    candidates: Vec<Candidate>,
    /// Per cell, `coast_offsets[cell]..coast_offsets[cell + 1]` in `coast_edges`: the
    /// borders within [`COASTAL_WATERS_KM`] of a cell that is not entirely inside a region.
    coast_offsets: Vec<u32>,
    coast_edges: Vec<CoastEdge>,
    /// Units per degree of the integer coordinates in `shapes` and `edges`.
    scale: f64,
}

/// The polygon of one region, in integer units.
struct Shape {
    country: u16,
    min_x: i32,
    min_y: i32,
    max_x: i32,
    max_y: i32,
    band_height: i32,
    /// Index of this shape's first offset in `Regions::band_offsets`.
    first_band: u32,
    band_count: u32,
    /// From a finer source and drawn over its neighbours (Gibraltar over Spain): tested first.
    overlay: bool,
}

/// One polygon edge in integer units. Horizontal edges are not stored: they never cross a
/// horizontal ray.
#[derive(Clone, Copy)]
struct Edge {
    x1: i32,
    y1: i32,
    x2: i32,
    y2: i32,
}

impl Edge {
    fn west(&self) -> i32 {
        self.x1.min(self.x2)
    }
}

/// An edge listed for the nearest-coast search, possibly shifted by 360° (see
/// [`Regions::build_coast_index`]).
#[derive(Clone, Copy)]
struct CoastEdge {
    country: u16,
    x1: i32,
    y1: i32,
    x2: i32,
    y2: i32,
}

#[derive(Clone, Copy)]
enum Cell {
    /// No region touches the cell.
    Empty,
    /// The whole cell lies inside this country (index into `countries`).
    Inside(u16),
    /// Test `candidates[start..start + len]` in order.
    Mixed { start: u32, len: u16 },
}

#[derive(Clone, Copy)]
struct Candidate {
    shape: u16,
    /// The cell is inside the shape wherever no earlier candidate matched, so the shape is
    /// the answer without a test. Always last in a list.
    rest_of_cell: bool,
}

/// Slot of a code in `Regions::by_code`; `None` unless both bytes are `A`..=`Z`.
fn code_slot(code: RegionCode) -> Option<usize> {
    let [a, b] = code.0;
    (a.is_ascii_uppercase() && b.is_ascii_uppercase())
        .then(|| usize::from(a - b'A') * 26 + usize::from(b - b'A'))
}

impl Regions {
    /// The built-in regions, decoded on first use and shared afterwards.
    pub fn builtin() -> &'static Regions {
        static REGIONS: OnceLock<Regions> = OnceLock::new();
        REGIONS.get_or_init(|| {
            // The data is embedded at build time and checked by this module's tests, so a
            // failure here is a build defect, not a runtime condition.
            Regions::decode(DATA)
                .expect("the embedded region data (src/regions/countries.bin) is valid")
        })
    }

    /// All regions, sorted by code.
    pub fn countries(&self) -> &[Country] {
        &self.countries
    }

    /// The region with this code.
    pub fn country(&self, code: RegionCode) -> &Country {
        // A `RegionCode` exists only for built-in regions, so the index is always there.
        let index = self
            .index_of(code)
            .expect("every RegionCode names a built-in region");
        &self.countries[index]
    }

    /// The region containing `at`; at sea, the region whose coast is nearest if it is within
    /// [`COASTAL_WATERS_KM`]; otherwise (the open sea) `None`. Points on a border may go to
    /// either side.
    pub fn locate(&self, at: Coordinates) -> Option<RegionCode> {
        // -180 and 180 are the same meridian. Rings cut at the antimeridian meet at +180 and
        // the westward ray test counts a point on a ring's east edge as inside, so +180 is
        // the side that finds the region.
        let lon = if at.lon == -180.0 { 180.0 } else { at.lon };
        let px = lon * self.scale;
        let py = at.lat * self.scale;
        let col = ((lon + 180.0).floor() as usize).min(GRID_COLS - 1);
        let row = ((at.lat + 90.0).floor() as usize).min(GRID_ROWS - 1);
        let cell = row * GRID_COLS + col;
        let country = match self.cells[cell] {
            Cell::Empty => self.nearest_coast(cell, at.lat, px, py)?,
            Cell::Inside(country) => country,
            Cell::Mixed { start, len } => {
                let start = start as usize;
                let list = &self.candidates[start..start + usize::from(len)];
                let hit = list.iter().find(|c| {
                    c.rest_of_cell || self.contains(&self.shapes[usize::from(c.shape)], px, py)
                });
                match hit {
                    Some(hit) => self.shapes[usize::from(hit.shape)].country,
                    None => self.nearest_coast(cell, at.lat, px, py)?,
                }
            }
        };
        Some(self.countries[usize::from(country)].code)
    }

    fn index_of(&self, code: RegionCode) -> Option<usize> {
        let index = *self.by_code.get(code_slot(code)?)?;
        (index != u16::MAX).then_some(usize::from(index))
    }

    /// Even-odd test of the point `(px, py)` (in units) against all rings of `shape`: the
    /// number of edges that straddle the point's latitude (half-open, so a vertex on the
    /// ray counts once) and cross it strictly west of the point. `gen.mjs` places the
    /// representative points with exactly this rule.
    fn contains(&self, shape: &Shape, px: f64, py: f64) -> bool {
        if px < f64::from(shape.min_x)
            || px > f64::from(shape.max_x)
            || py < f64::from(shape.min_y)
            || py > f64::from(shape.max_y)
        {
            return false;
        }
        let band = ((py - f64::from(shape.min_y)) / f64::from(shape.band_height)) as usize;
        let band = band.min(shape.band_count as usize - 1) + shape.first_band as usize;
        let edges =
            &self.edges[self.band_offsets[band] as usize..self.band_offsets[band + 1] as usize];
        let mut inside = false;
        for e in edges {
            // Sorted by west end: no later edge can cross west of the point.
            if f64::from(e.west()) >= px {
                break;
            }
            let (x1, y1, x2, y2) = (
                f64::from(e.x1),
                f64::from(e.y1),
                f64::from(e.x2),
                f64::from(e.y2),
            );
            if (y1 > py) != (y2 > py) {
                let xi = x1 + ((py - y1) * (x2 - x1)) / (y2 - y1);
                if xi < px {
                    inside = !inside;
                }
            }
        }
        inside
    }

    /// Decodes the data file and builds the index.
    fn decode(data: &'static [u8]) -> Result<Regions, DecodeError> {
        let mut r = Reader { data, pos: 0 };
        if r.bytes(4)? != b"DRRG" {
            return Err(DecodeError("not a region data file (bad magic)"));
        }
        if r.u8()? != FORMAT_VERSION {
            return Err(DecodeError("unsupported region data version"));
        }
        let scale = r.varint()?;
        let point_scale = r.varint()?;
        if !(1..=100_000).contains(&scale) || point_scale == 0 {
            return Err(DecodeError("bad coordinate scale"));
        }
        let scale = i32::try_from(scale).map_err(|_| DecodeError("bad coordinate scale"))?;
        let count = usize::try_from(r.varint()?).map_err(|_| DecodeError("bad region count"))?;
        if count >= usize::from(u16::MAX) {
            return Err(DecodeError("too many regions"));
        }

        let mut countries = Vec::with_capacity(count);
        let mut by_code = vec![u16::MAX; 26 * 26];
        let mut rings_of = Vec::with_capacity(count); // per country: rings of (x, y) units
        let mut overlay_of = Vec::with_capacity(count);
        for index in 0..count {
            let code = RegionCode([r.u8()?, r.u8()?]);
            let slot = code_slot(code).ok_or(DecodeError("region code is not two letters A-Z"))?;
            if countries.last().is_some_and(|c: &Country| c.code >= code) {
                return Err(DecodeError("regions are not sorted by code"));
            }
            by_code[slot] = index as u16;
            let continent = *Continent::ALL
                .get(usize::from(r.u8()?))
                .ok_or(DecodeError("bad continent"))?;
            let flags = r.u8()?;
            let lat = r.zigzag()? as f64 / point_scale as f64;
            let lon = r.zigzag()? as f64 / point_scale as f64;
            let centroid =
                Coordinates::new(lat, lon).map_err(|_| DecodeError("bad representative point"))?;
            let name_len = usize::try_from(r.varint()?).map_err(|_| DecodeError("bad name"))?;
            let name = std::str::from_utf8(r.bytes(name_len)?)
                .map_err(|_| DecodeError("name is not UTF-8"))?;
            let ring_count = r.varint()?;
            let mut rings = Vec::new();
            let (mut x, mut y) = (0_i64, 0_i64);
            for _ in 0..ring_count {
                let n = r.varint()?;
                if n < 3 {
                    return Err(DecodeError("ring with fewer than 3 points"));
                }
                let mut ring = Vec::new();
                for _ in 0..n {
                    x += r.zigzag()?;
                    y += r.zigzag()?;
                    if x.abs() > 180 * i64::from(scale) || y.abs() > 90 * i64::from(scale) {
                        return Err(DecodeError("vertex out of range"));
                    }
                    // In range, so it fits.
                    ring.push((x as i32, y as i32));
                }
                rings.push(ring);
            }
            let has_polygon = flags & 1 != 0;
            if has_polygon == rings.is_empty() {
                return Err(DecodeError("polygon flag does not match the rings"));
            }
            countries.push(Country {
                code,
                name,
                continent,
                centroid,
                has_polygon,
            });
            rings_of.push(rings);
            overlay_of.push(flags & 2 != 0);
        }
        if r.pos != data.len() {
            return Err(DecodeError("trailing bytes"));
        }

        let mut regions = Regions {
            countries,
            by_code,
            shapes: Vec::new(),
            band_offsets: Vec::new(),
            edges: Vec::new(),
            cells: Vec::new(),
            candidates: Vec::new(),
            coast_offsets: Vec::new(),
            coast_edges: Vec::new(),
            scale: f64::from(scale),
        };
        for (country, rings) in rings_of.iter().enumerate() {
            if !rings.is_empty() {
                regions.add_shape(country as u16, rings, overlay_of[country], scale);
            }
        }
        regions.build_grid(&rings_of, scale);
        Ok(regions)
    }

    /// Buckets one region's edges by latitude band.
    fn add_shape(&mut self, country: u16, rings: &[Vec<(i32, i32)>], overlay: bool, scale: i32) {
        let points = rings.iter().flatten();
        let min_x = points.clone().map(|p| p.0).min().unwrap_or(0);
        let max_x = points.clone().map(|p| p.0).max().unwrap_or(0);
        let min_y = points.clone().map(|p| p.1).min().unwrap_or(0);
        let max_y = points.map(|p| p.1).max().unwrap_or(0);
        let band_height = (scale / BANDS_PER_DEGREE).max(1);
        let band_count = ((max_y - min_y) / band_height + 1) as usize;
        let mut bands: Vec<Vec<Edge>> = vec![Vec::new(); band_count];
        for ring in rings {
            for (i, &(x1, y1)) in ring.iter().enumerate() {
                let (x2, y2) = ring[(i + 1) % ring.len()];
                if y1 == y2 {
                    continue;
                }
                // Every band the edge's latitude range touches, so a point anywhere in the
                // band finds it.
                let first = ((y1.min(y2) - min_y) / band_height) as usize;
                let last = ((y1.max(y2) - min_y) / band_height) as usize;
                for band in &mut bands[first..=last] {
                    band.push(Edge { x1, y1, x2, y2 });
                }
            }
        }
        let first_band = self.band_offsets.len() as u32;
        for mut band in bands {
            band.sort_by_key(Edge::west);
            self.band_offsets.push(self.edges.len() as u32);
            self.edges.extend(band);
        }
        self.band_offsets.push(self.edges.len() as u32);
        self.shapes.push(Shape {
            country,
            min_x,
            min_y,
            max_x,
            max_y,
            band_height,
            first_band,
            band_count: band_count as u32,
            overlay,
        });
    }

    /// Classifies every grid cell: empty, inside one region, or crossed by borders.
    fn build_grid(&mut self, rings_of: &[Vec<Vec<(i32, i32)>>], scale: i32) {
        // Cell column/row of a coordinate in units; the east and north edges of the world
        // (180°, 90°) belong to the last column/row, like in `locate`.
        let col_of = |x: i32| (((x + 180 * scale) / scale) as usize).min(GRID_COLS - 1);
        let row_of = |y: i32| (((y + 90 * scale) / scale) as usize).min(GRID_ROWS - 1);
        let mut crossing: Vec<Vec<u16>> = vec![Vec::new(); GRID_COLS * GRID_ROWS];
        let mut inside: Vec<Vec<u16>> = vec![Vec::new(); GRID_COLS * GRID_ROWS];
        let mut crosses = vec![false; GRID_COLS * GRID_ROWS];
        let mut xs = Vec::new();
        for (shape_index, shape) in self.shapes.iter().enumerate() {
            let shape_id = shape_index as u16;
            // 1. Cells that a border of the shape passes through (every cell in each edge's
            //    bounding box: conservative, and edges are short).
            let mut touched = Vec::new();
            let rings = &rings_of[usize::from(shape.country)];
            for ring in rings {
                for (i, &(x1, y1)) in ring.iter().enumerate() {
                    let (x2, y2) = ring[(i + 1) % ring.len()];
                    for row in row_of(y1.min(y2))..=row_of(y1.max(y2)) {
                        for col in col_of(x1.min(x2))..=col_of(x1.max(x2)) {
                            let cell = row * GRID_COLS + col;
                            if !crosses[cell] {
                                crosses[cell] = true;
                                touched.push(cell);
                                crossing[cell].push(shape_id);
                            }
                        }
                    }
                }
            }
            // 2. Any other cell in the bounding box is entirely inside or entirely outside
            //    (no border runs through it): decide by its centre, one scan line per row.
            for row in row_of(shape.min_y)..=row_of(shape.max_y) {
                let yc = ((row as f64 - 90.0) + 0.5) * f64::from(scale);
                xs.clear();
                if yc >= f64::from(shape.min_y) && yc <= f64::from(shape.max_y) {
                    let band =
                        ((yc - f64::from(shape.min_y)) / f64::from(shape.band_height)) as usize;
                    let band = band.min(shape.band_count as usize - 1) + shape.first_band as usize;
                    let edges = &self.edges
                        [self.band_offsets[band] as usize..self.band_offsets[band + 1] as usize];
                    for e in edges {
                        let (x1, y1, x2, y2) = (
                            f64::from(e.x1),
                            f64::from(e.y1),
                            f64::from(e.x2),
                            f64::from(e.y2),
                        );
                        if (y1 > yc) != (y2 > yc) {
                            xs.push(x1 + ((yc - y1) * (x2 - x1)) / (y2 - y1));
                        }
                    }
                    xs.sort_by(f64::total_cmp);
                }
                let mut west = 0; // crossings west of the current cell centre
                for col in col_of(shape.min_x)..=col_of(shape.max_x) {
                    let xc = ((col as f64 - 180.0) + 0.5) * f64::from(scale);
                    while west < xs.len() && xs[west] < xc {
                        west += 1;
                    }
                    let cell = row * GRID_COLS + col;
                    if west % 2 == 1 && !crosses[cell] {
                        inside[cell].push(shape_id);
                    }
                }
            }
            for cell in touched {
                crosses[cell] = false;
            }
        }

        self.cells = Vec::with_capacity(GRID_COLS * GRID_ROWS);
        for (crossing, inside) in crossing.iter_mut().zip(&inside) {
            let cell = match (crossing.len(), inside.as_slice()) {
                (0, []) => Cell::Empty,
                (0, [only]) => Cell::Inside(self.shapes[usize::from(*only)].country),
                _ => {
                    // Overlays first: they lie on top of the regions around them.
                    crossing.sort_by_key(|&s| !self.shapes[usize::from(s)].overlay);
                    let start = self.candidates.len() as u32;
                    let tested = crossing.iter().map(|&shape| Candidate {
                        shape,
                        rest_of_cell: false,
                    });
                    // Regions do not overlap, so at most one region holds the rest of the
                    // cell; should data ever overlap, the first one wins.
                    let rest = inside.first().map(|&shape| Candidate {
                        shape,
                        rest_of_cell: true,
                    });
                    self.candidates.extend(tested.chain(rest));
                    let len = self.candidates.len() as u32 - start;
                    Cell::Mixed {
                        start,
                        len: len as u16,
                    }
                }
            };
            self.cells.push(cell);
        }
        self.build_coast_index(rings_of, scale);
    }

    /// Lists, for every cell not entirely inside a region, the borders within
    /// [`COASTAL_WATERS_KM`] of it, for the nearest-coast fallback of `locate`.
    fn build_coast_index(&mut self, rings_of: &[Vec<Vec<(i32, i32)>>], scale: i32) {
        let scale_f = f64::from(scale);
        let reach_lat = COASTAL_WATERS_KM / KM_PER_DEGREE;
        let mut near: Vec<Vec<CoastEdge>> = vec![Vec::new(); GRID_COLS * GRID_ROWS];
        for shape in &self.shapes {
            for ring in &rings_of[usize::from(shape.country)] {
                for (i, &(x1, y1)) in ring.iter().enumerate() {
                    let (x2, y2) = ring[(i + 1) % ring.len()];
                    let south = f64::from(y1.min(y2)) / scale_f - reach_lat;
                    let north = f64::from(y1.max(y2)) / scale_f + reach_lat;
                    // A degree of longitude is shortest at the latitude nearest a pole.
                    let polar = south.abs().max(north.abs());
                    let reach_lon = if polar >= 89.0 {
                        360.0
                    } else {
                        reach_lat / polar.to_radians().cos()
                    };
                    let west = f64::from(x1.min(x2)) / scale_f - reach_lon;
                    let east = f64::from(x1.max(x2)) / scale_f + reach_lon;
                    let rows = row_range(south, north);
                    // Near the antimeridian the reach wraps around: the edge is also listed
                    // one turn east or west, shifted so that plain distances work.
                    for turn in [-1_i32, 0, 1] {
                        let shift = f64::from(turn) * 360.0;
                        let (w, e) = (west + shift, east + shift);
                        if e < -180.0 || w > 180.0 {
                            continue;
                        }
                        let dx = turn * 360 * scale;
                        let edge = CoastEdge {
                            country: shape.country,
                            x1: x1 + dx,
                            y1,
                            x2: x2 + dx,
                            y2,
                        };
                        for row in rows.clone() {
                            for col in col_range(w, e) {
                                let cell = row * GRID_COLS + col;
                                if !matches!(self.cells[cell], Cell::Inside(_)) {
                                    near[cell].push(edge);
                                }
                            }
                        }
                    }
                }
            }
        }
        self.coast_offsets = Vec::with_capacity(near.len() + 1);
        for list in near {
            self.coast_offsets.push(self.coast_edges.len() as u32);
            self.coast_edges.extend(list);
        }
        self.coast_offsets.push(self.coast_edges.len() as u32);
    }

    /// The region with a border nearest to `(px, py)` (units), if within
    /// [`COASTAL_WATERS_KM`].
    fn nearest_coast(&self, cell: usize, lat: f64, px: f64, py: f64) -> Option<u16> {
        let edges = &self.coast_edges
            [self.coast_offsets[cell] as usize..self.coast_offsets[cell + 1] as usize];
        // Local equirectangular projection: good to well under 1% over a few tens of km.
        let k = lat.to_radians().cos();
        let reach = COASTAL_WATERS_KM / KM_PER_DEGREE * self.scale;
        let mut best = (reach * reach, None);
        for e in edges {
            let (ax, ay) = (f64::from(e.x1) * k, f64::from(e.y1));
            let (dx, dy) = (f64::from(e.x2) * k - ax, f64::from(e.y2) - ay);
            let (qx, qy) = (px * k - ax, py - ay);
            let len2 = dx * dx + dy * dy;
            let t = if len2 > 0.0 {
                ((qx * dx + qy * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (ex, ey) = (qx - t * dx, qy - t * dy);
            let d2 = ex * ex + ey * ey;
            if d2 <= best.0 {
                best = (d2, Some(e.country));
            }
        }
        best.1
    }
}

/// Grid rows covering latitudes `south..=north` (degrees), clamped to the world.
fn row_range(south: f64, north: f64) -> std::ops::RangeInclusive<usize> {
    let row = |lat: f64| ((lat.clamp(-90.0, 90.0) + 90.0).floor() as usize).min(GRID_ROWS - 1);
    row(south)..=row(north)
}

/// Grid columns covering longitudes `west..=east` (degrees), clamped to the world.
fn col_range(west: f64, east: f64) -> std::ops::RangeInclusive<usize> {
    let col = |lon: f64| ((lon.clamp(-180.0, 180.0) + 180.0).floor() as usize).min(GRID_COLS - 1);
    col(west)..=col(east)
}

/// A defect in the embedded data file.
#[derive(Debug)]
struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

struct Reader {
    data: &'static [u8],
    pos: usize,
}

impl Reader {
    fn bytes(&mut self, n: usize) -> Result<&'static [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let end = end.ok_or(DecodeError("truncated"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    /// Unsigned LEB128.
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint too long"))
    }

    /// Zigzag-encoded signed LEB128 (0, -1, 1, -2, ... as 0, 1, 2, 3, ...).
    fn zigzag(&mut self) -> Result<i64, DecodeError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The region at a point, as text for readable assertions.
    fn at(lat: f64, lon: f64) -> Option<String> {
        let point = Coordinates::new(lat, lon).expect("test coordinates are valid");
        Regions::builtin().locate(point).map(|c| c.to_string())
    }

    #[track_caller]
    fn assert_at(lat: f64, lon: f64, expected: Option<&str>, what: &str) {
        assert_eq!(at(lat, lon).as_deref(), expected, "{what} ({lat}, {lon})");
    }

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).expect("test code is valid")
    }

    #[test]
    fn cities() {
        assert_at(52.52, 13.405, Some("DE"), "Berlin");
        assert_at(40.7128, -74.006, Some("US"), "New York");
        assert_at(35.6762, 139.6503, Some("JP"), "Tokyo");
        assert_at(-23.5505, -46.6333, Some("BR"), "São Paulo");
        assert_at(6.5244, 3.3792, Some("NG"), "Lagos");
        assert_at(-33.8688, 151.2093, Some("AU"), "Sydney");
        assert_at(1.3521, 103.8198, Some("SG"), "Singapore");
        assert_at(35.8989, 14.5146, Some("MT"), "Valletta");
        assert_at(26.2285, 50.586, Some("BH"), "Manama");
        assert_at(22.3193, 114.1694, Some("HK"), "Hong Kong");
        assert_at(22.1987, 113.5439, Some("MO"), "Macau");
        assert_at(43.7384, 7.4246, Some("MC"), "Monte Carlo");
        assert_at(43.7311, 7.4197, Some("MC"), "Monaco-Ville");
        assert_at(55.6761, 12.5683, Some("DK"), "Copenhagen");
        assert_at(-8.5211, 179.1983, Some("TV"), "Funafuti");
    }

    #[test]
    fn open_sea_is_nowhere() {
        assert_at(30.0, -40.0, None, "mid-Atlantic");
        assert_at(10.0, -140.0, None, "mid-Pacific");
        assert_at(-40.0, 80.0, None, "southern Indian Ocean");
        assert_at(90.0, 0.0, None, "North Pole");
    }

    #[test]
    fn coastal_waters_belong_to_the_nearest_coast() {
        // About 10 km off Long Island and off Brittany: inside the 12 nautical miles.
        assert_at(40.5, -73.0, Some("US"), "off Long Island");
        assert_at(48.3, -4.95, Some("FR"), "off Brest");
        // About 60 km out: beyond them.
        assert_at(48.3, -5.9, None, "far off Brest");
    }

    #[test]
    fn land_borders() {
        // The 49th parallel, US-Canada, 5.5 km either side.
        assert_at(49.05, -100.0, Some("CA"), "Manitoba");
        assert_at(48.95, -100.0, Some("US"), "North Dakota");
        // The Oder, Germany-Poland.
        assert_at(52.35, 14.40, Some("DE"), "west of the Oder");
        assert_at(52.35, 14.75, Some("PL"), "east of the Oder");
        // The eastern Pyrenees, France-Spain.
        assert_at(42.55, 2.5, Some("FR"), "Conflent");
        assert_at(42.3, 2.5, Some("ES"), "Garrotxa");
        // The straight Kenya-Tanzania line between Lake Victoria and Kilimanjaro.
        assert_at(-1.9, 35.8, Some("KE"), "Kenyan side");
        assert_at(-2.1, 35.8, Some("TZ"), "Tanzanian side");
        // Enclaves: Lesotho in South Africa, San Marino in Italy.
        assert_at(-29.6, 28.2, Some("LS"), "Lesotho");
        assert_at(-29.0, 26.0, Some("ZA"), "Free State");
        assert_at(43.94, 12.46, Some("SM"), "San Marino");
    }

    /// Islands the 1:50m outlines leave out, added from the 1:10m data: far out at sea, or
    /// nearer a neighbour's coast than their own country's.
    #[test]
    fn small_islands() {
        assert_at(54.1815, 7.885, Some("DE"), "Helgoland");
        assert_at(35.51, 12.6, Some("IT"), "Lampedusa");
        assert_at(38.71, 13.19, Some("IT"), "Ustica");
        assert_at(43.06, 16.18, Some("HR"), "Vis");
        assert_at(59.53, -1.63, Some("GB"), "Fair Isle");
        assert_at(-19.72, 63.42, Some("MU"), "Rodrigues");
        assert_at(-25.066, -130.1, Some("PN"), "Adamstown, Pitcairn");
        assert_at(
            -37.067,
            -12.311,
            Some("SH"),
            "Edinburgh of the Seven Seas, Tristan da Cunha",
        );
        assert_at(-31.55, 159.08, Some("AU"), "Lord Howe Island");
        // Not in the 1:10m data either: Ponza (no region) and Kastellorizo (2 km off Turkey,
        // so the nearest coast, TR, under the 12-nautical-mile rule).
        assert_at(40.9, 12.96, None, "Ponza");
        assert_at(36.15, 29.59, Some("TR"), "Kastellorizo");
    }

    #[test]
    fn antimeridian() {
        assert_at(67.0, 179.9, Some("RU"), "Chukotka west of 180");
        assert_at(67.0, -179.9, Some("RU"), "Chukotka east of 180");
        assert_at(67.0, 180.0, Some("RU"), "Chukotka on 180");
        assert_at(67.0, -180.0, Some("RU"), "Chukotka on -180");
        assert_at(71.2, -179.5, Some("RU"), "Wrangel Island east");
        assert_at(71.3, 179.6, Some("RU"), "Wrangel Island west");
        assert_at(-16.8, -179.95, Some("FJ"), "Taveuni");
        assert_at(-16.6, 179.3, Some("FJ"), "Vanua Levu");
        assert_at(52.85, 173.0, Some("US"), "Attu, Aleutians");
        assert_at(64.8, -147.7, Some("US"), "Fairbanks");
        assert_at(1.87, -157.4, Some("KI"), "Kiritimati");
        assert_at(1.4518, 172.9717, Some("KI"), "Tarawa");
    }

    #[test]
    fn carved_and_special_territories() {
        assert_at(4.9, -52.3, Some("GF"), "Cayenne");
        assert_at(-21.1151, 55.5364, Some("RE"), "Réunion");
        assert_at(14.65, -61.0, Some("MQ"), "Martinique");
        assert_at(-12.8, 45.15, Some("YT"), "Mayotte");
        assert_at(16.24, -61.53, Some("GP"), "Pointe-à-Pitre");
        assert_at(78.22, 15.65, Some("SJ"), "Longyearbyen");
        assert_at(12.15, -68.27, Some("BQ"), "Bonaire");
        assert_at(-10.49, 105.62, Some("CX"), "Christmas Island");
        assert_at(-12.19, 96.85, Some("CC"), "Cocos (Keeling) Islands");
        assert_at(-9.37, -171.21, Some("TK"), "Fakaofo, Tokelau");
        assert_at(-54.42, 3.4, Some("BV"), "Bouvet Island");
        assert_at(36.14, -5.35, Some("GI"), "Gibraltar, over Spain");
        assert_at(36.18, -5.37, Some("ES"), "La Línea, next to Gibraltar");
        assert_at(42.66, 21.16, Some("XK"), "Pristina");
        assert_at(35.2, 33.6, Some("CY"), "northern Cyprus");
        assert_at(9.56, 44.06, Some("SO"), "Hargeisa");
        assert_at(35.4, 77.1, Some("IN"), "Siachen Glacier");
        assert_at(-80.0, 0.0, Some("AQ"), "Antarctica");
        assert_at(-89.9999, 45.0, Some("AQ"), "near the South Pole");
        assert_at(-90.0, 0.0, Some("AQ"), "South Pole");
    }

    #[test]
    fn every_region_is_complete_and_finds_itself() {
        let regions = Regions::builtin();
        let countries = regions.countries();
        assert!(countries.len() >= 249, "{} regions", countries.len());
        assert!(
            countries.windows(2).all(|w| w[0].code < w[1].code),
            "sorted by code"
        );
        for c in countries {
            assert_eq!(regions.country(c.code), c);
            assert_eq!(RegionCode::parse(c.code.as_str()), Ok(c.code));
            assert!(!c.name.is_empty(), "{} has a name", c.code);
            assert!(
                Coordinates::new(c.centroid.lat(), c.centroid.lon()).is_ok(),
                "{} has a valid centroid",
                c.code
            );
            if c.has_polygon {
                assert_eq!(
                    regions.locate(c.centroid),
                    Some(c.code),
                    "{} locates its centroid",
                    c.code
                );
            }
        }
        let missing: Vec<_> = countries
            .iter()
            .filter(|c| !c.has_polygon)
            .map(|c| c.code)
            .collect();
        assert!(missing.is_empty(), "regions without polygon: {missing:?}");
    }

    #[test]
    fn names_and_continents() {
        let regions = Regions::builtin();
        let de = regions.country(code("DE"));
        assert_eq!((de.name, de.continent), ("Germany", Continent::Europe));
        let aq = regions.country(code("AQ"));
        assert_eq!(aq.continent, Continent::Antarctica);
        assert_eq!(
            regions.country(code("US")).continent,
            Continent::NorthAmerica
        );
        assert_eq!(
            regions.country(code("BR")).continent,
            Continent::SouthAmerica
        );
        assert_eq!(regions.country(code("XK")).name, "Kosovo");
        assert_eq!(Continent::NorthAmerica.name(), "North America");
        assert_eq!(Continent::Oceania.code(), "OC");
        for continent in Continent::ALL {
            let json = serde_json::to_value(continent).expect("serializes");
            assert_eq!(json, serde_json::json!(continent.code()));
        }
    }

    #[test]
    fn parse_codes() {
        assert_eq!(code("de"), code("DE"));
        assert_eq!(code("dE").as_str(), "DE");
        assert_eq!("fr".parse::<RegionCode>(), Ok(code("FR")));
        assert_eq!(
            RegionCode::parse("DEU"),
            Err(RegionError::Malformed(r#""DEU""#.into()))
        );
        assert_eq!(
            RegionCode::parse(""),
            Err(RegionError::Malformed(r#""""#.into()))
        );
        assert_eq!(
            RegionCode::parse("D1"),
            Err(RegionError::Malformed(r#""D1""#.into()))
        );
        assert_eq!(
            RegionCode::parse(" DE"),
            Err(RegionError::Malformed(r#"" DE""#.into()))
        );
        // Two bytes but one non-ASCII character.
        assert_eq!(
            RegionCode::parse("É"),
            Err(RegionError::Malformed(r#""É""#.into()))
        );
        assert_eq!(
            RegionCode::parse("xx"),
            Err(RegionError::Unknown("XX".into()))
        );
        // Exceptionally reserved codes are not regions.
        assert_eq!(
            RegionCode::parse("UK"),
            Err(RegionError::Unknown("UK".into()))
        );
        let long = "x".repeat(1000);
        let Err(RegionError::Malformed(echoed)) = RegionCode::parse(&long) else {
            panic!("a long input is malformed");
        };
        assert!(echoed.len() < 40, "long input is shortened: {echoed}");
        assert!(
            echoed.ends_with("\"…"),
            "cut past the closing quote: {echoed}"
        );
        assert_eq!(
            RegionCode::parse("a\"\n").unwrap_err().to_string(),
            "malformed region code \"a\\\"\\n\": expected two letters, an ISO 3166-1 alpha-2 \
             country code such as \"DE\""
        );
        assert_eq!(
            RegionCode::parse("XX").unwrap_err().to_string(),
            "unknown region \"XX\": expected an ISO 3166-1 alpha-2 country code such as \"DE\""
        );
    }

    #[test]
    fn code_formats() {
        let de = code("DE");
        assert_eq!(de.to_string(), "DE");
        assert_eq!(format!("{de:?}"), "RegionCode(\"DE\")");
        assert_eq!(serde_json::to_string(&de).expect("serializes"), "\"DE\"");
        assert_eq!(
            serde_json::from_str::<RegionCode>("\"de\"").expect("deserializes"),
            de
        );
        assert!(serde_json::from_str::<RegionCode>("\"XX\"").is_err());
        let schema =
            serde_json::to_value(<RegionCode as utoipa::PartialSchema>::schema()).expect("schema");
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["pattern"], "^[A-Z]{2}$");
        assert_eq!(schema["examples"], serde_json::json!(["DE"]));
        assert_eq!(<RegionCode as utoipa::ToSchema>::name(), "RegionCode");
    }

    #[test]
    fn coordinates() {
        let p = Coordinates::new(52.52, 13.405).expect("valid");
        assert_eq!((p.lat(), p.lon()), (52.52, 13.405));
        assert_eq!(
            serde_json::to_value(p).expect("serializes"),
            serde_json::json!({"lat": 52.52, "lon": 13.405})
        );
        for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)] {
            assert!(Coordinates::new(lat, lon).is_ok(), "({lat}, {lon})");
        }
        assert!(matches!(
            Coordinates::new(f64::NAN, 0.0),
            Err(CoordinatesError::LatitudeNotFinite(_))
        ));
        assert!(matches!(
            Coordinates::new(0.0, f64::NAN),
            Err(CoordinatesError::LongitudeNotFinite(_))
        ));
        assert!(matches!(
            Coordinates::new(0.0, f64::INFINITY),
            Err(CoordinatesError::LongitudeNotFinite(_))
        ));
        assert_eq!(
            Coordinates::new(90.5, 0.0),
            Err(CoordinatesError::LatitudeOutOfRange(90.5))
        );
        assert_eq!(
            Coordinates::new(-91.0, 0.0),
            Err(CoordinatesError::LatitudeOutOfRange(-91.0))
        );
        assert_eq!(
            Coordinates::new(0.0, 180.1),
            Err(CoordinatesError::LongitudeOutOfRange(180.1))
        );
        assert_eq!(
            Coordinates::new(0.0, -200.0).unwrap_err().to_string(),
            "longitude -200 is out of range: expected -180 to 180 degrees"
        );
        // A huge number is not echoed digit by digit.
        assert_eq!(
            Coordinates::new(1e308, 0.0).unwrap_err().to_string(),
            "latitude 1e308 is out of range: expected -90 to 90 degrees"
        );
        assert_eq!(
            Coordinates::new(0.0, -1234567.5).unwrap_err().to_string(),
            "longitude -1.2345675e6 is out of range: expected -180 to 180 degrees"
        );
        assert_eq!(
            Coordinates::new(f64::NAN, 0.0).unwrap_err().to_string(),
            "latitude must be a finite number of degrees, got NaN"
        );
    }

    /// `locate` agrees with a brute-force even-odd test over all rings at many points, so the
    /// grid and the band index lose nothing.
    #[test]
    fn index_matches_brute_force() {
        let regions = Regions::builtin();
        let rings = decoded_rings();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1_u64 << 53) as f64
        };
        for i in 0..20_000 {
            // Half uniform over the globe, half near a region's representative point.
            let (lat, lon) = if i % 2 == 0 {
                (next() * 180.0 - 90.0, next() * 360.0 - 180.0)
            } else {
                let c = &regions.countries()[(next() * regions.countries().len() as f64) as usize];
                let lat = (c.centroid.lat() + next() * 4.0 - 2.0).clamp(-90.0, 90.0);
                let lon = (c.centroid.lon() + next() * 4.0 - 2.0).clamp(-180.0, 180.0);
                (lat, lon)
            };
            let point = Coordinates::new(lat, lon).expect("in range");
            let (px, py) = (lon * regions.scale, lat * regions.scale);
            let brute: Vec<_> = rings
                .iter()
                .filter(|(_, b, r)| {
                    b.0 <= px && px <= b.2 && b.1 <= py && py <= b.3 && brute_contains(r, px, py)
                })
                .map(|(code, _, _)| *code)
                .collect();
            let found = regions.locate(point);
            match brute.as_slice() {
                [] => {} // sea: the nearest-coast rule may or may not apply
                [only] => assert_eq!(found, Some(*only), "({lat}, {lon})"),
                several => assert!(
                    found.is_some_and(|f| several.contains(&f)),
                    "({lat}, {lon})"
                ),
            }
        }
    }

    /// Per region: code, bounding box (min x, min y, max x, max y) and rings, in units.
    #[allow(clippy::type_complexity)]
    fn decoded_rings() -> Vec<(RegionCode, (f64, f64, f64, f64), Vec<Vec<(i32, i32)>>)> {
        // Re-read the file with the same reader the index is built from.
        let mut r = Reader { data: DATA, pos: 5 };
        let _scale = r.varint().expect("scale");
        let _point_scale = r.varint().expect("point scale");
        let count = r.varint().expect("count");
        (0..count)
            .map(|_| {
                let code = RegionCode([r.u8().expect("code"), r.u8().expect("code")]);
                r.bytes(2).expect("continent and flags");
                r.zigzag().expect("lat");
                r.zigzag().expect("lon");
                let name_len = r.varint().expect("name") as usize;
                r.bytes(name_len).expect("name");
                let (mut x, mut y) = (0, 0);
                let rings: Vec<Vec<(i32, i32)>> = (0..r.varint().expect("rings"))
                    .map(|_| {
                        (0..r.varint().expect("points"))
                            .map(|_| {
                                x += r.zigzag().expect("x");
                                y += r.zigzag().expect("y");
                                (x as i32, y as i32)
                            })
                            .collect()
                    })
                    .collect();
                let mut bbox = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
                for &(x, y) in rings.iter().flatten() {
                    let (x, y) = (f64::from(x), f64::from(y));
                    bbox = (bbox.0.min(x), bbox.1.min(y), bbox.2.max(x), bbox.3.max(y));
                }
                (code, bbox, rings)
            })
            .collect()
    }

    fn brute_contains(rings: &[Vec<(i32, i32)>], px: f64, py: f64) -> bool {
        let mut inside = false;
        for ring in rings {
            for (i, &(x1, y1)) in ring.iter().enumerate() {
                let (x2, y2) = ring[(i + 1) % ring.len()];
                let (x1, y1, x2, y2) = (f64::from(x1), f64::from(y1), f64::from(x2), f64::from(y2));
                if (y1 > py) != (y2 > py) && x1 + ((py - y1) * (x2 - x1)) / (y2 - y1) < px {
                    inside = !inside;
                }
            }
        }
        inside
    }

    #[test]
    fn decode_rejects_corrupt_data() {
        assert!(Regions::decode(b"NOPE").is_err());
        assert!(Regions::decode(&DATA[..DATA.len() / 2]).is_err());
        let mut wrong_version = DATA[..5].to_vec();
        wrong_version[4] = FORMAT_VERSION + 1;
        assert!(Regions::decode(Box::leak(wrong_version.into_boxed_slice())).is_err());
    }
}
