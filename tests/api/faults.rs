//! Hard cases: a Redis crash under load, reads after a Redis restart, and arbitrary bodies.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app};

struct Outcome {
    sent: Instant,
    done: Instant,
    status: u16,
    counted: bool,
}

/// Polls the sum of stored counts until it equals `expected` (revocations of reports answered
/// 503 are applied asynchronously once Redis is back) or 10 s pass; returns the last sum.
async fn stored_counts_settle(app: &TestApp, width: i64, expected: u64) -> u64 {
    let redis = app.redis.as_ref().unwrap();
    let mut stored = redis.sum_of_counts(width);
    for _ in 0..100 {
        if stored == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = redis.sum_of_counts(width);
    }
    stored
}

/// Steady load; `kill -9` of Redis; restart. Nothing acknowledged is lost, nothing is counted
/// that was not acknowledged, nobody waits more than 2 s, and the server's Redis connections
/// stay bounded throughout (at most 4; it opens one for writes, one for reads and one for the
/// event feed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crash_under_load_loses_nothing_acknowledged() {
    let mut app = spawn_app(Backend::Redis).await;
    let app_url = app.url("/v1/services/tiktok/reports");
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));

    // Sample the server's connections to Redis while it is up.
    let port = app.redis.as_ref().unwrap().port;
    let max_clients = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, max_clients) = (stop.clone(), max_clients.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                let list = client
                    .get_connection_with_timeout(Duration::from_millis(200))
                    .and_then(|mut conn| {
                        redis::cmd("CLIENT").arg("LIST").query::<String>(&mut conn)
                    });
                // The sampler's own connection is one of the lines.
                if let Ok(list) = list {
                    max_clients
                        .fetch_max(list.lines().count().saturating_sub(1), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let workers: Vec<_> = (0..12)
        .map(|w| {
            let (stop, outcomes, url, client) = (stop.clone(), outcomes.clone(), app_url.clone(), app.client.clone());
            tokio::spawn(async move {
                let regions = ["DE", "US", "JP", "BR", "NG", "AU"];
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = json!({"problem": "login", "region": regions[n % regions.len()], "client_id": format!("w{w}-{n}")});
                    let sent = Instant::now();
                    let response = client.post(&url).header("content-type", "application/json").body(body.to_string()).send().await;
                    let done = Instant::now();
                    let (status, counted) = match response {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            (status, body["counted"] == true)
                        }
                        Err(_) => (0, false),
                    };
                    outcomes.lock().unwrap().push(Outcome { sent, done, status, counted });
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Instant::now();
    app.redis.as_mut().unwrap().kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let restarted = Instant::now();
    app.redis.as_mut().unwrap().restart();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    sampler.join().unwrap();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let acked = outcomes
        .iter()
        .filter(|o| o.status == 202 && o.counted)
        .count() as u64;
    let before = outcomes
        .iter()
        .filter(|o| o.done < killed && o.status == 202)
        .count();
    let first_503 = outcomes
        .iter()
        .filter(|o| o.status == 503 && o.done >= killed)
        .map(|o| o.done - killed)
        .min()
        .expect("some 503 while Redis is down");
    let back = outcomes
        .iter()
        .filter(|o| o.status == 202 && o.sent >= restarted)
        .map(|o| o.done - restarted)
        .min()
        .expect("some 202 after the restart");
    let slowest = outcomes.iter().map(|o| o.done - o.sent).max().unwrap();
    let statuses: std::collections::BTreeMap<u16, usize> =
        outcomes.iter().fold(Default::default(), |mut m, o| {
            *m.entry(o.status).or_default() += 1;
            m
        });
    let stored = stored_counts_settle(&app, 60, acked).await;
    let hourly = stored_counts_settle(&app, 3600, acked).await;
    eprintln!(
        "statuses {statuses:?}; 202 before the kill: {before}; first 503 after {first_503:?}; \
         first 202 after restart {back:?}; slowest {slowest:?}; acked {acked}, stored {stored}; \
         max Redis clients {}",
        max_clients.load(Ordering::Relaxed)
    );
    assert!(before > 100, "load was running before the kill");
    assert!(
        first_503 < Duration::from_secs(2),
        "first 503 after {first_503:?}"
    );
    assert!(
        back < Duration::from_secs(5),
        "first 202 after restart took {back:?}"
    );
    assert!(
        slowest < Duration::from_millis(2500),
        "a request hung for {slowest:?}"
    );
    assert_eq!(statuses.get(&0), None, "every request got an HTTP answer");
    assert_eq!(
        stored, acked,
        "stored counts must equal acknowledged reports"
    );
    assert_eq!(hourly, acked, "the hourly roll-up agrees");
    let max = max_clients.load(Ordering::Relaxed);
    assert!(
        (1..=4).contains(&max),
        "server held {max} Redis connections"
    );
}

/// After Redis restarts, the connections the server held are broken, which each finds out
/// only by its next command: the first read of each must still be answered, not refused
/// with a 503 while `/readyz` says the store answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_reads_after_a_redis_restart_are_answered() {
    let mut app = spawn_app(Backend::Redis).await;
    let reads = [
        "/v1/services/tiktok/reports",
        "/v1/incidents?active=true",
        "/v1/services/tiktok/status",
    ];
    for path in reads {
        assert_eq!(app.get(path).await.status, 200, "{path}");
    }
    let redis = app.redis.as_mut().unwrap();
    redis.kill();
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "the store never answered again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in reads {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    }
}

/// Bodies, content types and service ids a client might send, valid and not.
fn requests() -> impl Strategy<Value = (String, Option<String>, Vec<u8>)> {
    let service = prop_oneof![
        Just("tiktok".to_owned()),
        Just("myspace".to_owned()),
        "[a-z0-9-]{1,8}"
    ];
    let content_type = prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,30}".prop_map(Some),
    ];
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<i64>().prop_map(|i| json!(i)),
        "\\PC{0,20}".prop_map(|s| json!(s)),
    ];
    let arbitrary_json = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| json!(v)),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..6).prop_map(|m| json!(m)),
        ]
    });
    let near_valid = (
        prop_oneof![
            Just(json!("login")),
            Just(json!("app")),
            "\\PC{0,12}".prop_map(|s| json!(s)),
            Just(json!(3))
        ],
        prop_oneof![
            Just(None),
            Just(Some(json!("DE"))),
            "[A-Za-z]{0,3}".prop_map(|s| Some(json!(s)))
        ],
        prop_oneof![
            Just(None),
            (any::<f64>(), any::<f64>())
                .prop_map(|(lat, lon)| Some(json!({"lat": lat, "lon": lon}))),
            (-90.0..90.0f64, -180.0..180.0f64)
                .prop_map(|(lat, lon)| Some(json!({"lat": lat, "lon": lon}))),
            Just(Some(json!({"lat": "52", "lon": null}))),
        ],
        prop_oneof![Just(None), "\\PC{0,80}".prop_map(|s| Some(json!(s)))],
    )
        .prop_map(|(problem, region, location, client_id)| {
            let mut body = json!({"problem": problem});
            if let Some(r) = region {
                body["region"] = r;
            }
            if let Some(l) = location {
                body["location"] = l;
            }
            if let Some(c) = client_id {
                body["client_id"] = c;
            }
            body
        });
    let body = prop_oneof![
        2 => near_valid.prop_map(|v| v.to_string().into_bytes()),
        1 => arbitrary_json.prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..6000),
    ];
    (service, content_type, body)
}

/// Checks `check` on 300 cases of `strategy`, against one app on `backend`.
fn against_app<S: Strategy>(
    backend: Backend,
    strategy: S,
    check: impl Fn(&tokio::runtime::Runtime, &TestApp, S::Value) -> Result<(), TestCaseError>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn_app(backend));
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |value| check(&runtime, &app, value))
        .unwrap();
}

fn arbitrary_requests_never_produce_server_errors(backend: Backend) {
    against_app(
        backend,
        requests(),
        |runtime, app, (service, content_type, body)| {
            let answer = runtime.block_on(app.post_raw(
                &format!("/v1/services/{service}/reports"),
                content_type.as_deref(),
                body,
            ));
            prop_assert!(answer.status < 500, "{} {}", answer.status, answer.text);
            if answer.status >= 400 {
                let body: serde_json::Value =
                    serde_json::from_str(&answer.text).unwrap_or_default();
                prop_assert!(
                    body["code"].is_string() && body["message"].is_string(),
                    "{}",
                    answer.text
                );
            }
            Ok(())
        },
    );
}

/// Query strings for the series read: valid, extreme and garbage values.
fn series_queries() -> impl Strategy<Value = String> {
    let time = prop_oneof![
        Just("2026-11-21T12:00:00Z".to_owned()),
        Just("0000-01-01T00:00:30Z".to_owned()),
        Just("9999-12-31T23:59:59-23:59".to_owned()),
        Just("1969-12-31T23:00:00Z".to_owned()),
        (0i32..=9999, 1u8..=12, 1u8..=28, 0u8..24)
            .prop_map(|(y, m, d, h)| format!("{y:04}-{m:02}-{d:02}T{h:02}:00:00%2B01:00")),
        "[ -~]{0,24}",
    ];
    let field = prop_oneof![
        time.clone().prop_map(|t| format!("since={t}")),
        time.prop_map(|t| format!("until={t}")),
        prop_oneof![
            Just("1m"),
            Just("5m"),
            Just("15m"),
            Just("1h"),
            Just("2h"),
            Just("")
        ]
        .prop_map(|r| format!("resolution={r}")),
        prop_oneof![Just("DE".to_owned()), "[A-Za-z%0-9]{0,4}"].prop_map(|r| format!("region={r}")),
        prop_oneof![Just("login".to_owned()), "[ -~]{0,10}"].prop_map(|p| format!("problem={p}")),
        "[ -~]{0,20}",
    ];
    prop::collection::vec(field, 0..5).prop_map(|fields| fields.join("&"))
}

fn arbitrary_series_queries_never_produce_server_errors(backend: Backend) {
    against_app(backend, series_queries(), |runtime, app, query| {
        let url = format!("{}/v1/services/tiktok/reports?{query}", app.address);
        let answer = runtime.block_on(async {
            match app.client.get(&url).send().await {
                Ok(response) => Some(crate::helpers::Answer::from(response).await),
                // reqwest refuses some URLs outright: nothing reached the server.
                Err(e) if e.is_builder() => None,
                Err(e) => panic!("{url}: {e}"),
            }
        });
        if let Some(answer) = answer {
            prop_assert!(
                answer.status == 200 || answer.status == 400,
                "{query}: {} {}",
                answer.status,
                answer.text
            );
            let body: serde_json::Value = serde_json::from_str(&answer.text).unwrap_or_default();
            if answer.status == 400 {
                prop_assert_eq!(&body["code"], "invalid_query", "{}", answer.text);
            } else {
                prop_assert!(body["points"].is_array(), "{}", answer.text);
            }
        }
        Ok(())
    });
}

mod arbitrary_series_queries_never_produce_5xx {
    use super::*;

    #[test]
    fn memory() {
        arbitrary_series_queries_never_produce_server_errors(Backend::Memory);
    }

    #[test]
    fn redis() {
        arbitrary_series_queries_never_produce_server_errors(Backend::Redis);
    }
}

mod arbitrary_bodies_never_produce_5xx {
    use super::*;

    #[test]
    fn memory() {
        arbitrary_requests_never_produce_server_errors(Backend::Memory);
    }

    #[test]
    fn redis() {
        arbitrary_requests_never_produce_server_errors(Backend::Redis);
    }
}
