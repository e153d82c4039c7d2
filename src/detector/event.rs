//! Incidents and their events: the one JSON shape of DESIGN.md's contract, used by the backtest
//! output, the event stream, the REST API and (later) SSE and webhooks.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::catalog::{Problem, ServiceId};
use crate::regions::RegionCode;

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// The detector declared an outage.
    #[serde(rename = "incident.opened")]
    Opened,
    /// Its scope, regions, problems or cause changed.
    #[serde(rename = "incident.updated")]
    Updated,
    /// Reports stayed near the baseline long enough: the outage is over.
    #[serde(rename = "incident.resolved")]
    Resolved,
}

impl EventType {
    /// The wire name, e.g. `incident.opened`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "incident.opened",
            Self::Updated => "incident.updated",
            Self::Resolved => "incident.resolved",
        }
    }
}

/// Whether an incident is still going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Open,
    Resolved,
}

/// Where an outage is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Reports are elevated across the service's regions.
    Global,
    /// The excess is concentrated in the listed regions.
    Regional,
}

/// An outage of one service, as the detector currently sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "tiktok-1795262460", "service": "tiktok", "status": "open",
    "scope": "regional", "regions": ["CA", "US"], "partial": true, "problems": ["login"],
    "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null,
    "expected_per_min": 4.2, "observed_per_min": 61.0
}))]
pub struct Incident {
    /// `<service>-<Unix second of the start>`: unique, stable, URL-safe.
    pub id: String,
    pub service: ServiceId,
    pub status: IncidentStatus,
    pub scope: Scope,
    /// Affected countries, sorted; for a global scope the countries where reports are elevated.
    pub regions: Vec<RegionCode>,
    /// True when only some of the service's problem categories are elevated.
    pub partial: bool,
    /// The elevated problem categories, sorted.
    pub problems: Vec<Problem>,
    /// Upstream services (`depends_on`) with an open incident that started before this one or
    /// within a few minutes after it, sorted.
    pub caused_by: Vec<ServiceId>,
    /// Start of the first elevated bucket.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    /// Where the outage most likely ended (a bucket boundary: where the counts most likely
    /// gave way from the incident's rate to the baseline's), once resolved; null while the
    /// incident is open. The `incident.resolved` event comes once the counts have looked
    /// ordinary for at least `--resolve-after` (15 minutes by default; longer where a sparse
    /// series needs more buckets to tell), so `resolved_at` can be up to that long before
    /// its `at`.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub resolved_at: Option<OffsetDateTime>,
    /// Reports per minute the baseline expected, averaged over the incident so far: in an
    /// event, as of the event; in an open incident's record, as of the detector's last bucket
    /// (refreshed every bucket, without an event); in a resolved incident, from
    /// `started_at` to `resolved_at`.
    pub expected_per_min: f64,
    /// Reports per minute observed, averaged over the incident so far (as
    /// `expected_per_min`).
    pub observed_per_min: f64,
}

impl Incident {
    /// The id of the incident of `service` that started at `started_at` (Unix seconds).
    pub fn id_for(service: &ServiceId, started_at: i64) -> String {
        format!("{service}-{started_at}")
    }
}

/// One decision of the detector: the contract's event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "incident.opened", "at": "2026-11-21T12:03:00Z",
    "incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "open",
        "scope": "regional", "regions": ["CA", "US"], "partial": true, "problems": ["login"],
        "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null,
        "expected_per_min": 4.2, "observed_per_min": 61.0}
}))]
pub struct IncidentEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the detector made the decision: the end of the bucket whose counts decided it,
    /// as in a backtest. (The live detector takes up a bucket at its first tick, every 10 s
    /// by default, from 2 s after the bucket's end, so the event is written a few seconds
    /// after its `at`.)
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub incident: Incident,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn events_serialize_as_the_contract_says() {
        let event = IncidentEvent {
            kind: EventType::Opened,
            at: datetime!(2026-11-21 12:03 UTC),
            incident: Incident {
                id: "tiktok-1795262460".into(),
                service: ServiceId::parse("tiktok").unwrap(),
                status: IncidentStatus::Open,
                scope: Scope::Regional,
                regions: vec![
                    RegionCode::parse("CA").unwrap(),
                    RegionCode::parse("US").unwrap(),
                ],
                partial: true,
                problems: vec![Problem::parse("login").unwrap()],
                caused_by: vec![],
                started_at: datetime!(2026-11-21 12:01 UTC),
                resolved_at: None,
                expected_per_min: 4.2,
                observed_per_min: 61.0,
            },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"type":"incident.opened","at":"2026-11-21T12:03:00Z","incident":{"id":"tiktok-1795262460","service":"tiktok","status":"open","scope":"regional","regions":["CA","US"],"partial":true,"problems":["login"],"caused_by":[],"started_at":"2026-11-21T12:01:00Z","resolved_at":null,"expected_per_min":4.2,"observed_per_min":61.0}}"#
        );
        let back: IncidentEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }
}
