//! Time buckets: the width reports are counted in (`--bucket`), the hourly roll-up kept for
//! long history, and the resolutions the read API aggregates to.
//!
//! Bucket starts are Unix seconds aligned to the width, so every replica and every store agrees
//! on which bucket an instant falls in without coordination.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

/// Width of the hourly roll-up buckets, in seconds.
pub const ROLLUP_SECS: i64 = 3600;

/// The width of the fine report buckets: whole seconds that divide an hour, so that fine
/// buckets nest exactly in the hourly roll-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketWidth(i64);

/// Why a duration cannot be a bucket width.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid bucket width {0:?}: it must be whole seconds that divide one hour (e.g. 10s, 1m, 5m, 1h)"
)]
pub struct BucketWidthError(String);

impl BucketWidth {
    /// The default: one minute.
    pub const ONE_MINUTE: Self = Self(60);

    /// A width of `d`, which must be whole seconds dividing 3600.
    pub fn new(d: Duration) -> Result<Self, BucketWidthError> {
        let secs = i64::try_from(d.as_secs()).unwrap_or(0);
        if d.subsec_nanos() != 0 || secs == 0 || ROLLUP_SECS % secs != 0 {
            return Err(BucketWidthError(humantime::format_duration(d).to_string()));
        }
        Ok(Self(secs))
    }

    /// Width in seconds.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// Start (Unix seconds) of the bucket that contains `at`.
    pub fn start_of(self, at: OffsetDateTime) -> i64 {
        align(at.unix_timestamp(), self.0)
    }
}

/// `t` rounded down to a multiple of `width` (also for times before 1970).
pub fn align(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width
}

/// The resolution of a series read through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Resolution {
    /// One minute.
    #[serde(rename = "1m")]
    OneMinute,
    /// Five minutes.
    #[serde(rename = "5m")]
    FiveMinutes,
    /// Fifteen minutes.
    #[serde(rename = "15m")]
    FifteenMinutes,
    /// One hour.
    #[serde(rename = "1h")]
    OneHour,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Self; 4] = [
        Self::OneMinute,
        Self::FiveMinutes,
        Self::FifteenMinutes,
        Self::OneHour,
    ];

    /// Parses `1m`, `5m`, `15m` or `1h`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneMinute => "1m",
            Self::FiveMinutes => "5m",
            Self::FifteenMinutes => "15m",
            Self::OneHour => "1h",
        }
    }

    /// Length in seconds.
    pub fn secs(self) -> i64 {
        match self {
            Self::OneMinute => 60,
            Self::FiveMinutes => 300,
            Self::FifteenMinutes => 900,
            Self::OneHour => 3600,
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn widths_must_divide_an_hour() {
        for ok in [1, 10, 30, 60, 300, 900, 3600] {
            assert!(BucketWidth::new(Duration::from_secs(ok)).is_ok(), "{ok}");
        }
        for bad in [0, 7, 45 * 60, 7200] {
            assert!(BucketWidth::new(Duration::from_secs(bad)).is_err(), "{bad}");
        }
        assert!(BucketWidth::new(Duration::from_millis(1500)).is_err());
    }

    #[test]
    fn bucket_start_is_aligned() {
        let w = BucketWidth::ONE_MINUTE;
        assert_eq!(
            w.start_of(datetime!(2026-11-21 12:03:59 UTC)),
            datetime!(2026-11-21 12:03 UTC).unix_timestamp()
        );
        assert_eq!(align(-1, 60), -60);
    }

    #[test]
    fn resolutions_round_trip() {
        for r in Resolution::ALL {
            assert_eq!(Resolution::parse(r.as_str()), Some(r));
        }
        assert_eq!(Resolution::parse("2m"), None);
    }
}
