//! The outage detector: report counts in, incidents out.

pub mod event;

pub use event::{EventType, Incident, IncidentEvent, IncidentStatus, Scope};
