//! downradar: a self-hostable, crowd-sourced outage detector.
//!
//! People (or apps and bots on their behalf) report "service X isn't working for me" with a
//! problem category and a country or a location. downradar resolves the location to a
//! country, deduplicates reporters by a keyed fingerprint, and counts distinct reporters per
//! service, country and problem in time buckets, in Redis or in an embedded store. A detector
//! compares the counts with seasonal baselines and declares incidents (global or regional,
//! partial or not, cascading or not). A REST API, documented by a generated OpenAPI spec,
//! takes reports and serves the counts, the incidents and each service's status.
//!
//! # Layout
//!
//! Modules in the order data flows through them:
//!
//! - [`config`]: the command line (every `serve` flag also an environment variable).
//! - [`catalog`]: the watched services and their problem categories (TOML), `ServiceId`, `Problem`.
//! - [`regions`]: the built-in countries with their polygons; coordinates to country.
//! - [`reporter`]: the client address behind trusted proxies, and the keyed reporter fingerprint.
//! - [`clock`]: injectable time, so tests never sleep; and Redis's clock, which every
//!   replica follows.
//! - [`buckets`]: bucket widths, the hourly roll-up and read resolutions.
//! - [`ingest`]: group commit: per worker thread, a bounded queue and a writer that flushes
//!   batches; reports in doubt are revoked.
//! - [`store`]: the `Store` trait; the embedded and the Redis implementations; the Redis key layout.
//! - [`detector`]: baselines, tests, the incident state machine and attribution, ticked on a
//!   clock; the live, lease-holding detector task; the incident event contract.
//! - [`fanout`]: one reader of the incident event stream per process, broadcast to the SSE
//!   subscribers of `GET /v1/events`.
//! - [`api`]: HTTP routes (JSON, Atom feeds, SVG status badges), the one error shape, and the
//!   OpenAPI spec built from the routes.
//! - [`telemetry`]: logs, Prometheus metrics and per-request accounting.
//! - [`text`]: client input quoted in error messages, cut short.
//! - [`startup`]: wires it all into a server that drains cleanly on shutdown.
//! - [`simulate`]: synthetic report counts with injected outages and their truth, for backtests.
//! - [`demo`]: `serve --demo`: synthetic history and live traffic with an outage every few
//!   minutes, written into the store so the live detector has something to find.
//! - [`import`]: recorded counts (the backtest CSV) into a store, as history.
//! - [`backtest`]: the detector over recorded counts, and its score against a simulation's truth.
//! - [`progress`]: the progress line of the long offline commands.
//! - [`output`]: their standard output, which a reader may close early.

pub mod api;
pub mod backtest;
pub mod buckets;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod demo;
pub mod detector;
pub mod fanout;
pub mod import;
pub mod ingest;
pub mod output;
pub mod progress;
pub mod regions;
pub mod reporter;
pub mod simulate;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod text;
