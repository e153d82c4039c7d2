//! Daylight saving time: which rule each region's clocks follow, and when it is in force.
//!
//! During daylight saving time a country's day comes an hour earlier in UTC, and a steep
//! daily rise seen an hour early looks like an outage; so the detector's profiles and
//! regional shares run on clocks that move with the countries' (UTC plus their daylight
//! saving shift; the time zone itself does not matter to them). These are
//! the rules in force in 2026, from the IANA time zone database (`europe`, `northamerica`,
//! `australasia`, `southamerica`, `asia`, `africa`; public domain), applied to every year:
//!
//! - A country with several zones on one rule takes its most populous zone's transition
//!   instants (the US and Canada their Eastern zone's, Australia Sydney's). A country that
//!   keeps one clock in some states only (Australia: Queensland, Western Australia and the
//!   Northern Territory keep standard time; Arizona and Hawaii in the US) is counted as
//!   following the rule of most of its people.
//! - Left out, as keeping standard time all year: Mexico (abolished 2022 outside its border
//!   cities), Brazil (2019), Iran, Jordan and Syria (2022), Paraguay (2024), Fiji, Samoa; and
//!   Morocco and Western Sahara, whose clocks go *back* an hour for Ramadan, and Palestine,
//!   whose dates follow Ramadan too (neither fits a fixed rule).
//! - Approximated by a neighbouring rule, within hours of their own instants: Moldova and
//!   Lebanon (Europe's days, midnight local), Cuba (North America's days, midnight local).

use std::cell::Cell;
use std::sync::OnceLock;

use super::RegionCode;

/// The daylight saving rule a region's clocks follow. Saved with detector state (see
/// `Baseline`'s profile clock) by position, as serde numbers variants: never reorder or
/// remove one, only add at the end (a build that meets a rule it does not know takes the
/// saved clock as damaged and uses the one its regions give).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum DaylightSaving {
    /// Standard time all year.
    None = 0,
    /// The European Union's: last Sunday of March to last Sunday of October, 01:00 UTC.
    Europe = 1,
    /// The United States' and Canada's: second Sunday of March to first Sunday of November,
    /// 02:00 local (Eastern: 07:00 and 06:00 UTC).
    NorthAmerica = 2,
    /// South-eastern Australia's: first Sunday of October to first Sunday of April, 02:00
    /// standard time (16:00 UTC the day before).
    Australia = 3,
    /// New Zealand's: last Sunday of September to first Sunday of April, 02:00 standard time
    /// (14:00 UTC the day before).
    NewZealand = 4,
    /// Chile's: first Sunday from the 2nd of September (04:00 UTC) to first Sunday from the
    /// 2nd of April (03:00 UTC).
    Chile = 5,
    /// Israel's: Friday from the 23rd of March, 02:00 local (00:00 UTC), to last Sunday of
    /// October, 02:00 local (23:00 UTC the day before).
    Israel = 6,
    /// Egypt's: last Friday of April, 00:00 local (22:00 UTC the day before), to the end of
    /// the last Thursday of October (21:00 UTC).
    Egypt = 7,
}

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// Regions following each rule, by ISO 3166-1 alpha-2 code.
const EUROPE: &[&str] = &[
    "AD", "AL", "AT", "AX", "BA", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FO",
    "FR", "GB", "GG", "GI", "GL", "GR", "HR", "HU", "IE", "IM", "IT", "JE", "LB", "LI", "LT", "LU",
    "LV", "MC", "MD", "ME", "MK", "MT", "NL", "NO", "PL", "PT", "RO", "RS", "SE", "SI", "SJ", "SK",
    "SM", "UA", "VA", "XK",
];
const NORTH_AMERICA: &[&str] = &["BM", "BS", "CA", "CU", "HT", "PM", "TC", "US"];
const AUSTRALIA: &[&str] = &["AU", "NF"];
const NEW_ZEALAND: &[&str] = &["NZ"];
const CHILE: &[&str] = &["CL"];
const ISRAEL: &[&str] = &["IL"];
const EGYPT: &[&str] = &["EG"];

/// Every rule with its regions, for the lookup and for tests.
pub(crate) const RULES: [(DaylightSaving, &[&str]); 7] = [
    (DaylightSaving::Europe, EUROPE),
    (DaylightSaving::NorthAmerica, NORTH_AMERICA),
    (DaylightSaving::Australia, AUSTRALIA),
    (DaylightSaving::NewZealand, NEW_ZEALAND),
    (DaylightSaving::Chile, CHILE),
    (DaylightSaving::Israel, ISRAEL),
    (DaylightSaving::Egypt, EGYPT),
];

impl DaylightSaving {
    /// The rule the region with ISO code `code` follows.
    pub fn of_code(code: &str) -> Self {
        RULES
            .iter()
            .find(|(_, codes)| codes.contains(&code))
            .map_or(Self::None, |&(rule, _)| rule)
    }

    /// The rule region `code` follows (a table lookup: the detector asks per bucket).
    pub fn of(code: RegionCode) -> Self {
        static TABLE: OnceLock<[DaylightSaving; 26 * 26]> = OnceLock::new();
        let slot = |[a, b]: [u8; 2]| usize::from(a - b'A') * 26 + usize::from(b - b'A');
        let table = TABLE.get_or_init(|| {
            let mut table = [Self::None; 26 * 26];
            for (rule, codes) in RULES {
                for code in codes {
                    let bytes = code.as_bytes();
                    table[slot([bytes[0], bytes[1]])] = rule;
                }
            }
            table
        });
        // A `RegionCode` holds two upper-case ASCII letters by construction.
        table[slot(code.0)]
    }

    /// How far the clocks are ahead of standard time at `t` (Unix seconds): an hour while
    /// the rule is in force, else nothing.
    pub fn shift(self, t: i64) -> i64 {
        if self == Self::None {
            return 0;
        }
        let Some((start, end)) = Self::spans(civil_year(t))[self as usize] else {
            return 0;
        };
        let on = if start < end {
            // Northern hemisphere: in force from spring to autumn.
            (start..end).contains(&t)
        } else {
            // Southern: from spring (late in the year) to autumn (early in it).
            t < end || t >= start
        };
        if on { HOUR } else { 0 }
    }

    /// Every rule's [`span`](Self::span) in `year`, by discriminant. The detector asks for
    /// shifts per bucket and region, and a year's spans take a few dozen calendar
    /// computations: the last year asked for on each thread is kept.
    fn spans(year: i64) -> [Option<(i64, i64)>; RULES.len() + 1] {
        type Spans = (i64, [Option<(i64, i64)>; RULES.len() + 1]);
        thread_local! {
            static LAST: Cell<Spans> = const { Cell::new((i64::MIN, [None; RULES.len() + 1])) };
        }
        LAST.with(|last| {
            let (cached, spans) = last.get();
            if cached == year {
                return spans;
            }
            let mut spans = [None; RULES.len() + 1];
            for (rule, _) in RULES {
                spans[rule as usize] = rule.span(year);
            }
            last.set((year, spans));
            spans
        })
    }

    /// When the rule's clocks go forward and back in `year` (Unix seconds).
    fn span(self, year: i64) -> Option<(i64, i64)> {
        let at = |day: i64, offset: i64| day * DAY + offset;
        Some(match self {
            Self::None => return None,
            Self::Europe => (
                at(last_weekday(year, 3, SUNDAY), HOUR),
                at(last_weekday(year, 10, SUNDAY), HOUR),
            ),
            Self::NorthAmerica => (
                at(weekday_from(year, 3, 8, SUNDAY), 7 * HOUR),
                at(weekday_from(year, 11, 1, SUNDAY), 6 * HOUR),
            ),
            Self::Australia => (
                at(weekday_from(year, 10, 1, SUNDAY), -8 * HOUR),
                at(weekday_from(year, 4, 1, SUNDAY), -8 * HOUR),
            ),
            Self::NewZealand => (
                at(last_weekday(year, 9, SUNDAY), -10 * HOUR),
                at(weekday_from(year, 4, 1, SUNDAY), -10 * HOUR),
            ),
            Self::Chile => (
                at(weekday_from(year, 9, 2, SUNDAY), 4 * HOUR),
                at(weekday_from(year, 4, 2, SUNDAY), 3 * HOUR),
            ),
            Self::Israel => (
                at(weekday_from(year, 3, 23, FRIDAY), 0),
                at(last_weekday(year, 10, SUNDAY), -HOUR),
            ),
            Self::Egypt => (
                at(last_weekday(year, 4, FRIDAY), -2 * HOUR),
                at(last_weekday(year, 10, THURSDAY), 21 * HOUR),
            ),
        })
    }
}

/// Days of the week, counted from Sunday as 0.
const SUNDAY: i64 = 0;
const THURSDAY: i64 = 4;
const FRIDAY: i64 = 5;

/// Day of the week of day `days` since 1970-01-01 (a Thursday).
fn weekday(days: i64) -> i64 {
    (days + THURSDAY).rem_euclid(7)
}

/// The first `weekday` on or after `day` of `month` in `year`, in days since the epoch.
fn weekday_from(year: i64, month: i64, day: i64, wd: i64) -> i64 {
    let d = days_from_civil(year, month, day);
    d + (wd - weekday(d)).rem_euclid(7)
}

/// The last `weekday` of `month` in `year`, in days since the epoch.
fn last_weekday(year: i64, month: i64, wd: i64) -> i64 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let last = days_from_civil(y, m, 1) - 1;
    last - (weekday(last) - wd).rem_euclid(7)
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar year of `t` (Unix seconds), UTC (Hinnant's `civil_from_days`).
fn civil_year(t: i64) -> i64 {
    let z = t.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(t: time::OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    #[test]
    fn calendar_arithmetic_matches_the_time_crate() {
        // Every day from 1899 to 2101, and the instants either side of each midnight.
        let mut date = time::macros::date!(1899 - 01 - 01);
        while date.year() <= 2101 {
            let midnight = date.midnight().assume_utc().unix_timestamp();
            let days = midnight / DAY;
            assert_eq!(
                days_from_civil(
                    i64::from(date.year()),
                    date.month() as i64,
                    date.day().into()
                ),
                days,
                "{date}"
            );
            assert_eq!(civil_year(midnight), i64::from(date.year()), "{date}");
            assert_eq!(
                civil_year(midnight + DAY - 1),
                i64::from(date.year()),
                "{date}"
            );
            assert_eq!(
                weekday(days),
                i64::from(date.weekday().number_days_from_sunday()),
                "{date}"
            );
            date = date.next_day().unwrap();
        }
    }

    /// The transitions of 2026, as the IANA database gives them (Python's `zoneinfo` on
    /// Debian's `tzdata` for Europe/Berlin, America/New_York, Australia/Sydney,
    /// Pacific/Auckland, America/Santiago, Asia/Jerusalem and Africa/Cairo).
    #[test]
    fn the_2026_transitions_fall_on_the_instants_of_the_time_zone_database() {
        use DaylightSaving::*;
        let cases = [
            (
                Europe,
                datetime!(2026-03-29 01:00 UTC),
                datetime!(2026-10-25 01:00 UTC),
            ),
            (
                NorthAmerica,
                datetime!(2026-03-08 07:00 UTC),
                datetime!(2026-11-01 06:00 UTC),
            ),
            (
                Australia,
                datetime!(2026-10-03 16:00 UTC),
                datetime!(2026-04-04 16:00 UTC),
            ),
            (
                NewZealand,
                datetime!(2026-09-26 14:00 UTC),
                datetime!(2026-04-04 14:00 UTC),
            ),
            (
                Chile,
                datetime!(2026-09-06 04:00 UTC),
                datetime!(2026-04-05 03:00 UTC),
            ),
            (
                Israel,
                datetime!(2026-03-27 00:00 UTC),
                datetime!(2026-10-24 23:00 UTC),
            ),
            (
                Egypt,
                datetime!(2026-04-23 22:00 UTC),
                datetime!(2026-10-29 21:00 UTC),
            ),
        ];
        for (rule, forward, back) in cases {
            let (forward, back) = (at(forward), at(back));
            assert_eq!(rule.shift(forward - 1), 0, "{rule:?} before going forward");
            assert_eq!(rule.shift(forward), HOUR, "{rule:?} going forward");
            assert_eq!(rule.shift(back - 1), HOUR, "{rule:?} before going back");
            assert_eq!(rule.shift(back), 0, "{rule:?} going back");
        }
        // The southern rules are in force across the new year, the northern ones not.
        let new_year = at(datetime!(2027-01-01 00:00 UTC));
        assert_eq!(Australia.shift(new_year), HOUR);
        assert_eq!(NewZealand.shift(new_year), HOUR);
        assert_eq!(Chile.shift(new_year), HOUR);
        assert_eq!(Europe.shift(new_year), 0);
        assert_eq!(None.shift(at(datetime!(2026-07-01 12:00 UTC))), 0);
        // The spans kept per thread are those of the year asked for, whichever came before.
        for year in [2026, 1999, 1999, 2026, 2100, 1970] {
            for (rule, _) in RULES {
                assert_eq!(DaylightSaving::spans(year)[rule as usize], rule.span(year));
            }
        }
    }

    #[test]
    fn every_listed_region_exists_once_and_countries_find_their_rule() {
        let mut seen = std::collections::BTreeSet::new();
        for (_, codes) in RULES {
            for code in codes {
                RegionCode::parse(code).unwrap_or_else(|e| panic!("{code}: {e}"));
                assert!(seen.insert(*code), "{code} is listed twice");
            }
        }
        assert_eq!(DaylightSaving::of_code("DE"), DaylightSaving::Europe);
        assert_eq!(DaylightSaving::of_code("US"), DaylightSaving::NorthAmerica);
        assert_eq!(DaylightSaving::of_code("IN"), DaylightSaving::None);
        assert_eq!(DaylightSaving::of_code("BR"), DaylightSaving::None);
        for country in crate::regions::Regions::builtin().countries() {
            let code = country.code;
            assert_eq!(
                DaylightSaving::of(code),
                DaylightSaving::of_code(code.as_str()),
                "{code}"
            );
        }
    }
}
