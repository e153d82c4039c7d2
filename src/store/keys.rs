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
//! | `dr:{svc}:generation`                 | string | a counter moved whenever counts already written change (a revocation undoing a count, history added), for readers that keep past buckets' sums; set to a random number when read while absent | none |
//! | `dr:detector:lease`                   | string | the detector leader lease: its holder's id (`SET NX PX`, renewed by the holder) | the lease ttl (`PX`) |
//! | `dr:detector:bucket`                  | string | the width (seconds) of the buckets the lease's holder detects on, written with the lease | the lease ttl (`PX`) |
//! | `dr:detector:cursor`                  | string | start (Unix seconds) of the next bucket the detector has not processed | none |
//! | `dr:detector:services`                | set    | ids of the services that have a detector state | none |
//! | `dr:detector:saved`                   | hash   | field service id → `<cursor>:<checksum>`: the cursor its state was saved at, and the state's 64-bit FNV-1a in hex (absent, or not the state's: saved at `dr:detector:cursor`) | none |
//! | `dr:detector:gaps`                    | string | the last commit's decisions on buckets without any report that a replay of the saved states may cross: `<start>:<1 missing data, 0 silence>`, comma-separated, oldest first (absent: none) | none |
//! | `dr:{svc}:detector`                   | string | the service's detector state (opaque binary blob) | none |
//! | `dr:{svc}:detector:staged:<holder>`   | string | a state the leader `<holder>` wrote ahead of a large commit, which renames it to `dr:{svc}:detector` | 5 minutes (`PX`); none once renamed |
//! | `dr:events`                           | stream | one entry per incident event, field `event` = the event JSON | trimmed to `--event-retention` (`XADD MINID ~`) |
//! | `dr:incidents`                        | zset   | every incident id, score = its start (Unix seconds) | members trimmed at start + roll-up retention |
//! | `dr:incidents:active`                 | zset   | ids of the open incidents, score = start | removed when resolved; trimmed like `dr:incidents` |
//! | `dr:{svc}:incidents`                  | zset   | the service's incident ids, score = start | trimmed like `dr:incidents`; the key at its newest start + roll-up retention |
//! | `dr:{svc}:incident:<start>`           | string | the incident's latest JSON (its last event's, its figures refreshed every bucket while open) | start + roll-up retention (`EXPIREAT`) |
//! | `dr:{svc}:incident:<start>:events`    | list   | the JSON of each of the incident's events, oldest first | start + roll-up retention (`EXPIREAT`) |
//!
//! `<width>` and `<start>` are seconds (`start` a Unix time aligned to `width`), so changing
//! `--bucket` never mixes buckets of different widths. `<fingerprint>` and `<token>` are
//! lower-case hex (128 bits each). Revocations are rare (they follow store failures), so
//! the `revoked` hashes normally do not exist and cost a report nothing. `<period>` is Unix
//! time divided by 10 minutes; a write is checked against the periods before, at and after its
//! own. A report counts once per service and dedup window.
//!
//! # The detector's keys
//!
//! An incident id is `<service>-<start>` (`Incident::id_for`), so `<start>` in the incident
//! keys is the Unix second the incident started. `dr:{svc}:incidents` lists one service's
//! incidents without scanning everyone's; open incidents are few, so a listing of one
//! service's open incidents filters `dr:incidents:active` by the id's service part instead.
//!
//! The lease, the cursor, the service set, the event stream and the incident indexes are
//! cross-service keys, and one detector commit (a single Lua script) writes them together with
//! the per-service state and incident keys of every service it touches. That script therefore
//! needs all of its keys on one node: **the detector commit works on a single Redis instance
//! only, not on a Redis Cluster**. Nor does the connection (one `ConnectionManager`, which
//! follows no `MOVED`), so a replica refuses a Cluster node at its start (see
//! `RedisStore::unsupported`); the report keys above stay cluster-ready.

use crate::catalog::ServiceId;
use crate::reporter::Fingerprint;

/// Prefix of every key, so downradar can share a Redis with other applications.
const PREFIX: &str = "dr";

/// The hash of the bucket of `width` seconds starting at `start`.
pub fn bucket(service: &ServiceId, width: i64, start: i64) -> String {
    format!("{PREFIX}:{{{service}}}:b:{width}:{start}")
}

/// The dedup marker of one reporter. (Built without the formatting machinery: one per
/// report, on the ingest hot path.)
pub fn seen(service: &ServiceId, reporter: Fingerprint) -> String {
    let hex = reporter.to_hex();
    let service = service.as_str();
    let mut key = String::with_capacity(PREFIX.len() + service.len() + 9 + hex.len());
    for part in [PREFIX, ":{", service, "}:seen:", &hex] {
        key.push_str(part);
    }
    key
}

/// The number of reporters counted from one address.
pub fn address(service: &ServiceId, address: Fingerprint) -> String {
    format!("{PREFIX}:{{{service}}}:addr:{}", address.to_hex())
}

/// The hash of this service's report tokens revoked in `period` (Unix time / 10 minutes).
pub fn revoked(service: &ServiceId, period: u64) -> String {
    format!("{PREFIX}:{{{service}}}:revoked:{period}")
}

/// The counter moved whenever counts of `service` already written change (see
/// [`crate::store::Store::generation`]).
pub fn generation(service: &ServiceId) -> String {
    format!("{PREFIX}:{{{service}}}:generation")
}

/// The detector leader lease: the holder's id.
pub fn detector_lease() -> String {
    format!("{PREFIX}:detector:lease")
}

/// The width of the buckets the detector leader reads, written with its lease: a replica
/// with another `--bucket` would acknowledge reports into buckets nobody detects on.
pub fn detector_bucket() -> String {
    format!("{PREFIX}:detector:bucket")
}

/// The detector's cursor: the start of the next bucket it has not processed.
pub fn detector_cursor() -> String {
    format!("{PREFIX}:detector:cursor")
}

/// The set of services that have a detector state.
pub fn detector_services() -> String {
    format!("{PREFIX}:detector:services")
}

/// The cursor each service's detector state was saved at.
pub fn detector_saved() -> String {
    format!("{PREFIX}:detector:saved")
}

/// The detector's decisions on buckets without any report that a replay may cross.
pub fn detector_gaps() -> String {
    format!("{PREFIX}:detector:gaps")
}

/// The detector state of one service.
pub fn detector_state(service: &ServiceId) -> String {
    format!("{PREFIX}:{{{service}}}:detector")
}

/// A state that the leader `holder` wrote ahead of its commit, which renames it to
/// [`detector_state`]: a large commit sends its states in chunks first, so that no single
/// call carries them all.
pub fn detector_staged(service: &ServiceId, holder: &str) -> String {
    format!("{PREFIX}:{{{service}}}:detector:staged:{holder}")
}

/// The stream of incident events.
pub fn events() -> String {
    format!("{PREFIX}:events")
}

/// Every incident, by start.
pub fn incidents() -> String {
    format!("{PREFIX}:incidents")
}

/// The open incidents, by start.
pub fn active_incidents() -> String {
    format!("{PREFIX}:incidents:active")
}

/// One service's incidents, by start.
pub fn service_incidents(service: &ServiceId) -> String {
    format!("{PREFIX}:{{{service}}}:incidents")
}

/// The latest JSON of the incident of `service` that started at `start` (Unix seconds).
pub fn incident(service: &ServiceId, start: i64) -> String {
    format!("{PREFIX}:{{{service}}}:incident:{start}")
}

/// The events of the incident of `service` that started at `start`, oldest first.
pub fn incident_events(service: &ServiceId, start: i64) -> String {
    format!("{PREFIX}:{{{service}}}:incident:{start}:events")
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
        assert_eq!(seen.len(), "dr:{tiktok}:seen:".len() + 32, "{seen}");
        assert_eq!(revoked(&svc, 2_983_333), "dr:{tiktok}:revoked:2983333");
        assert_eq!(detector_state(&svc), "dr:{tiktok}:detector");
        assert_eq!(
            detector_staged(&svc, "4242-00ff"),
            "dr:{tiktok}:detector:staged:4242-00ff"
        );
        assert_eq!(service_incidents(&svc), "dr:{tiktok}:incidents");
        assert_eq!(
            incident(&svc, 1_790_000_000),
            "dr:{tiktok}:incident:1790000000"
        );
        assert_eq!(
            incident_events(&svc, 1_790_000_000),
            "dr:{tiktok}:incident:1790000000:events"
        );
    }

    #[test]
    fn cross_service_keys_are_fixed() {
        assert_eq!(detector_lease(), "dr:detector:lease");
        assert_eq!(detector_cursor(), "dr:detector:cursor");
        assert_eq!(detector_services(), "dr:detector:services");
        assert_eq!(detector_saved(), "dr:detector:saved");
        assert_eq!(detector_gaps(), "dr:detector:gaps");
        assert_eq!(events(), "dr:events");
        assert_eq!(incidents(), "dr:incidents");
        assert_eq!(active_incidents(), "dr:incidents:active");
    }
}
