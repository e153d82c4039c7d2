//! The integration tests: one binary, the app started on port 0 per test, every API test run
//! against both stores (`<test>::memory` and `<test>::redis`). Redis tests start their own
//! `redis-server` on a free loopback port.

mod clock;
mod demo;
mod detector;
mod events;
mod faults;
mod feeds;
mod helpers;
mod incidents;
mod ingest;
mod openapi;
mod ops;
mod reads;
mod shutdown;
mod simulate_live;
mod store;
