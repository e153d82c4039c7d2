//! Speed of the built-in regions: decoding the embedded data once, then `locate`.
//!
//! Run with `cargo bench --bench regions`. Plain `main` (harness = false) so it needs no
//! benchmark framework; the numbers are means over a fixed pseudo-random point set.

use std::hint::black_box;
use std::time::Instant;

use downradar::regions::{Coordinates, Regions};

const LOOKUPS: usize = 1_000_000;

/// xorshift64: fixed seed, so every run measures the same points.
struct Rng(u64);

impl Rng {
    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1_u64 << 53) as f64
    }
}

fn main() {
    let started = Instant::now();
    let regions = Regions::builtin();
    let decode = started.elapsed();
    println!(
        "decode: {:.1} ms ({} regions)",
        decode.as_secs_f64() * 1e3,
        regions.countries().len()
    );

    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let uniform: Vec<Coordinates> = (0..LOOKUPS)
        .map(|_| point(rng.next() * 180.0 - 90.0, rng.next() * 360.0 - 180.0))
        .collect();
    // Near land: within 1.5° of a random region's representative point, the kind of
    // location reports actually carry (many fall on borders and coasts).
    let countries = regions.countries();
    let land: Vec<Coordinates> = (0..LOOKUPS)
        .map(|_| {
            let c = &countries[(rng.next() * countries.len() as f64) as usize];
            point(
                c.centroid.lat() + rng.next() * 3.0 - 1.5,
                c.centroid.lon() + rng.next() * 3.0 - 1.5,
            )
        })
        .collect();
    let mixed: Vec<Coordinates> = uniform[..LOOKUPS / 2]
        .iter()
        .chain(&land[..LOOKUPS / 2])
        .copied()
        .collect();

    for (name, points) in [
        ("uniform", &uniform),
        ("land-biased", &land),
        ("mixed 50/50", &mixed),
    ] {
        // One untimed pass warms caches and branch predictors, and counts the hits.
        let found = points
            .iter()
            .filter(|&&p| regions.locate(p).is_some())
            .count();
        let started = Instant::now();
        for &p in points.iter() {
            black_box(regions.locate(black_box(p)));
        }
        let elapsed = started.elapsed();
        println!(
            "locate, {name}: {:.0} ns per lookup (mean of {LOOKUPS}; {:.0}% in a region)",
            elapsed.as_secs_f64() * 1e9 / LOOKUPS as f64,
            found as f64 * 100.0 / LOOKUPS as f64,
        );
    }
}

/// A valid point, clamping jittered coordinates into range.
fn point(lat: f64, lon: f64) -> Coordinates {
    let lon = if lon > 180.0 {
        lon - 360.0
    } else if lon < -180.0 {
        lon + 360.0
    } else {
        lon
    };
    Coordinates::new(lat.clamp(-90.0, 90.0), lon).expect("clamped into range")
}
