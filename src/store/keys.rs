//! The Redis key layout: every key downradar writes is built here and nowhere else.
//!
//! Every key of one service carries the hash tag `{service_id}`, so a Redis Cluster keeps a
//! service on one slot and a per-service script or pipeline stays single-slot.
//!
//! | key                                   | type   | holds                                         | expiry                        |
//! |---------------------------------------|--------|-----------------------------------------------|-------------------------------|
//! | `dr:{svc}:b:<width>:<start>`          | hash   | field `<REGION>:<problem>` → distinct reporters in the bucket | bucket end + retention (`EXPIREAT`) |
//! | `dr:{svc}:b:3600:<start>`             | hash   | the hourly roll-up, same fields               | bucket end + roll-up retention |
//! | `dr:{svc}:seen:<fingerprint>`         | string | token of the report that counted this reporter | dedup window (`PX`)          |
//! | `dr:{svc}:addr:<fingerprint>`         | string | reporters counted from one address (only with `--max-reporters-per-address`) | dedup window from the first (`PX`) |
//! | `dr:{svc}:revoked:<period>`           | hash   | field `<token>` → 1 for each report revoked in the period | 2 periods of 10 minutes |
//!
//! `<width>` and `<start>` are seconds (`start` a Unix time aligned to `width`), so changing
//! `--bucket` never mixes buckets of different widths. `<fingerprint>` and `<token>` are
//! lower-case hex (128 bits each). Revocations are rare (they follow store failures), so
//! the `revoked` hashes normally do not exist and cost a report nothing. `<period>` is Unix
//! time divided by 10 minutes; a write is checked against the periods before, at and after its own. A report counts once per service and dedup window.

use crate::catalog::ServiceId;
use crate::reporter::Fingerprint;

/// Prefix of every key, so downradar can share a Redis with other applications.
const PREFIX: &str = "dr";

/// The hash of the bucket of `width` seconds starting at `start`.
pub fn bucket(service: &ServiceId, width: i64, start: i64) -> String {
    format!("{PREFIX}:{{{service}}}:b:{width}:{start}")
}

/// The dedup marker of one reporter.
pub fn seen(service: &ServiceId, reporter: Fingerprint) -> String {
    format!("{PREFIX}:{{{service}}}:seen:{}", reporter.to_hex())
}

/// The number of reporters counted from one address.
pub fn address(service: &ServiceId, address: Fingerprint) -> String {
    format!("{PREFIX}:{{{service}}}:addr:{}", address.to_hex())
}

/// The hash of this service's report tokens revoked in `period` (Unix time / 10 minutes).
pub fn revoked(service: &ServiceId, period: u64) -> String {
    format!("{PREFIX}:{{{service}}}:revoked:{period}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_service_hash_tag() {
        let svc = ServiceId::parse("tiktok").unwrap();
        assert_eq!(
            bucket(&svc, 60, 1_790_000_000),
            "dr:{tiktok}:b:60:1790000000"
        );
        let seen = seen(
            &svc,
            crate::reporter::ReporterSecret::from_config("k")
                .fingerprint("192.0.2.1".parse().unwrap(), None),
        );
        assert!(seen.starts_with("dr:{tiktok}:seen:"), "{seen}");
        assert_eq!(revoked(&svc, 2_983_333), "dr:{tiktok}:revoked:2983333");
    }
}
