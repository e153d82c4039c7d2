//! The read endpoints: series of counts, services, regions.

use std::time::Duration;

use serde_json::json;

use crate::on_both_stores;

on_both_stores! {
    /// Shares are given to three decimals (as the spec's example shows them), and problems
    /// reported as often are in alphabetical order.
    async fn problem_shares_are_rounded_and_ties_alphabetical(app, "--no-detector") {
        for (id, problem) in [("a", "login"), ("b", "login"), ("c", "app")] {
            let answer = app.report("tiktok", &json!({"problem": problem, "region": "DE", "client_id": id})).await;
            assert_eq!(answer.json()["counted"], true);
        }
        app.clock.advance(Duration::from_secs(60));
        let problems = app.get("/v1/services/tiktok/problems?window=1h").await.json();
        assert_eq!(problems["total"], 3, "{problems}");
        let listed: Vec<(String, f64)> = problems["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["problem"].as_str().unwrap().to_owned(), p["share"].as_f64().unwrap()))
            .collect();
        let expected = [("login", 0.667), ("app", 0.333), ("feed", 0.0), ("server-connection", 0.0), ("video-upload", 0.0)];
        assert_eq!(listed, expected.map(|(p, s)| (p.to_owned(), s)), "{problems}");
    }
}

on_both_stores! {
    /// The endpoints that read stored counts share the replica's budget of bucket reads:
    /// while it is used up, a request waits its turn for a second and is then answered 503
    /// `overloaded` with `Retry-After`; once room is freed, the same requests are answered.
    async fn reads_of_counts_wait_for_the_budget_then_are_refused(app, "--no-detector") {
        let answer = app.report("tiktok", &json!({"problem": "login", "region": "DE"})).await;
        assert_eq!(answer.json()["counted"], true);
        app.clock.advance(Duration::from_secs(60));
        let paths = [
            "/v1/services/tiktok/reports?resolution=15m",
            "/v1/services/tiktok/problems",
            "/v1/services/tiktok/map",
            "/v1/services/tiktok/status",
        ];
        use downradar::api::budget::{SMALL_BUDGET, SMALL_READ};
        // These are small reads: using up the large reads' lane leaves them be.
        let large = app.reads.take(i64::MAX).await.expect("the large lane is free");
        for path in paths {
            assert_eq!(app.get(path).await.status, 200, "{path}");
        }
        let mut held = vec![large];
        for _ in 0..SMALL_BUDGET / SMALL_READ as u32 {
            held.push(app.reads.take(SMALL_READ).await.expect("the small lane is free"));
        }
        let started = std::time::Instant::now();
        let refused = futures_util::future::join_all(paths.map(|path| app.get(path))).await;
        assert!(started.elapsed() >= downradar::api::budget::QUEUE_WAIT, "each waited its turn first");
        for (path, answer) in paths.iter().zip(&refused) {
            assert_eq!(answer.status, 503, "{path}: {}", answer.text);
            assert_eq!(answer.error_code(), "overloaded", "{path}");
            assert_eq!(answer.retry_after.as_deref(), Some("1"), "{path}");
        }
        // What reads no counts is not held up.
        assert_eq!(app.get("/v1/services/tiktok").await.status, 200);
        let metrics = app.get("/metrics").await.text;
        let refusals: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix("downradar_reads_refused_total "))
            .unwrap_or_else(|| panic!("no downradar_reads_refused_total in:\n{metrics}"))
            .parse()
            .unwrap();
        assert!(refusals >= 4.0, "{refusals}");

        // A request waiting when room is freed is answered.
        let waiting = app.get(paths[0]);
        let freed = async {
            tokio::time::sleep(downradar::api::budget::QUEUE_WAIT / 4).await;
            drop(held);
        };
        let (answer, ()) = tokio::join!(waiting, freed);
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.json()["total"], 1);
        for path in &paths[1..] {
            assert_eq!(app.get(path).await.status, 200, "{path}");
        }
    }

    async fn series_counts_distinct_reporters_per_bucket_with_filters(app) {
        // Three reporters now (two in DE, one in FR), one a minute later, one a repeat.
        for (id, region, problem) in [("a", "DE", "login"), ("b", "DE", "feed"), ("c", "FR", "login")] {
            let answer = app.report("tiktok", &json!({"problem": problem, "region": region, "client_id": id})).await;
            assert_eq!(answer.json()["counted"], true);
        }
        app.clock.advance(Duration::from_secs(60));
        app.report("tiktok", &json!({"problem": "login", "region": "DE", "client_id": "d"})).await;
        app.report("tiktok", &json!({"problem": "login", "region": "DE", "client_id": "a"})).await;
        app.clock.advance(Duration::from_secs(60));

        let series = app.get("/v1/services/tiktok/reports").await;
        assert_eq!(series.status, 200, "{}", series.text);
        let series = series.json();
        assert_eq!(series["resolution"], "1m");
        let points = series["points"].as_array().unwrap();
        assert_eq!(points.len(), 60, "default: 60 points");
        let counts: Vec<u64> = points.iter().map(|p| p["count"].as_u64().unwrap()).collect();
        assert_eq!(&counts[57..], &[3, 1, 0], "{series}");
        assert_eq!(series["total"], 4);

        let de = app.get("/v1/services/tiktok/reports?region=DE").await.json();
        assert_eq!(de["total"], 3);
        assert_eq!(de["region"], "DE");
        let login = app.get("/v1/services/tiktok/reports?problem=login").await.json();
        assert_eq!(login["total"], 3);
        let de_login = app.get("/v1/services/tiktok/reports?region=de&problem=login").await.json();
        assert_eq!(de_login["total"], 2);

        for resolution in ["5m", "15m", "1h"] {
            let coarse = app.get(&format!("/v1/services/tiktok/reports?resolution={resolution}")).await;
            assert_eq!(coarse.status, 200, "{}", coarse.text);
            let coarse = coarse.json();
            assert_eq!(coarse["total"], 4, "{resolution}: {coarse}");
            assert_eq!(coarse["points"].as_array().unwrap().len(), 60);
        }

        // An explicit window, aligned to the resolution.
        let now = app.clock_now();
        let since = (now - time::Duration::minutes(2)).format(&time::format_description::well_known::Rfc3339).unwrap();
        let until = (now - time::Duration::minutes(1)).format(&time::format_description::well_known::Rfc3339).unwrap();
        let window = app.get(&format!("/v1/services/tiktok/reports?since={since}&until={until}")).await.json();
        assert_eq!(window["points"].as_array().unwrap().len(), 1, "{window}");
        assert_eq!(window["total"], 3);
        assert_eq!(app.get("/v1/services/netflix/reports").await.json()["total"], 0);
    }

    async fn series_queries_are_validated(app) {
        for query in [
            "resolution=2m",
            "since=yesterday",
            "until=2026-13-01T00:00:00Z",
            "since=2026-11-21T12:00:00Z&until=2026-11-21T12:00:00Z",
            // Swapped, or equal, within one point: judged as given, not as rounded.
            "since=2026-11-21T12:59:59Z&until=2026-11-21T12:00:01Z&resolution=1h",
            "since=2026-11-21T12:00:40Z&until=2026-11-21T12:00:20Z",
            "since=2026-11-21T12:00:30Z&until=2026-11-21T12:00:30Z",
            "since=2026-11-21T12:00:30.7Z&until=2026-11-21T12:00:30.5Z",
            "since=2026-11-01T00:00:00Z&until=2026-11-03T00:00:00Z",
            "region=XX",
            "problem=wifi",
        ] {
            let answer = app.get(&format!("/v1/services/tiktok/reports?{query}")).await;
            assert_eq!(answer.status, 400, "{query}: {}", answer.text);
            assert_eq!(answer.error_code(), "invalid_query", "{query}");
        }
        // Out of RFC 3339's range, each end says what is wrong with it.
        for (query, says) in [
            ("until=9999-12-31T23:59:59Z", "until, rounded up to the end of its 1m bucket, is after 9999-12-31T23:59:59Z"),
            ("since=1969-12-31T23:00:00Z&until=1970-01-01T01:00:00Z", "since is before 1970-01-01T00:00:00Z"),
            ("until=1970-01-01T00:30:00Z", "since (by default 60 points before until) is before 1970-01-01T00:00:00Z"),
        ] {
            let answer = app.get(&format!("/v1/services/tiktok/reports?{query}")).await;
            assert_eq!(answer.status, 400, "{query}: {}", answer.text);
            assert!(answer.json()["message"].as_str().unwrap().starts_with(says), "{query}: {}", answer.text);
        }
        // The likely slips are named: a bare `+` (a space once decoded), Unix seconds, a date.
        for (query, says) in [
            ("since=2026-11-21T12:00:00+02:00", "send an offset's `+` as %2B"),
            ("since=1796643660", "Unix seconds are not taken"),
            ("since=2026-11-21", "a date needs a time and an offset as well"),
            ("since=2026-11-21T12:00:00", "a time needs its offset"),
        ] {
            let answer = app.get(&format!("/v1/services/tiktok/reports?{query}")).await;
            assert_eq!(answer.status, 400, "{query}: {}", answer.text);
            assert!(answer.json()["message"].as_str().unwrap().contains(says), "{query}: {}", answer.text);
        }
        // Other values of a date's length, or with a space, are not said to be one.
        for query in ["since=tomorrow!!", "since=2026-13-45", "since=last%20week"] {
            let answer = app.get(&format!("/v1/services/tiktok/reports?{query}")).await;
            assert_eq!(answer.status, 400, "{query}: {}", answer.text);
            let message = answer.json()["message"].as_str().unwrap().to_owned();
            assert!(!message.contains(" (a "), "{query}: {message}");
        }
        let offset = app.get("/v1/services/tiktok/reports?since=2026-11-21T12:00:00%2B02:00&until=2026-11-21T13:00:00%2B02:00").await;
        assert_eq!(offset.status, 200, "{}", offset.text);
        let last = app.get("/v1/services/tiktok/reports?since=9999-12-31T23:00:00Z&until=9999-12-31T23:59:00Z").await;
        assert_eq!(last.status, 200, "{}", last.text);
        assert_eq!(last.json()["until"], "9999-12-31T23:59:00Z");
        // An exclusive end a fraction of a second into a bucket takes that bucket.
        let fraction = app.get("/v1/services/tiktok/reports?since=2026-11-21T12:00:00Z&until=2026-11-21T12:00:00.5Z").await;
        assert_eq!(fraction.status, 200, "{}", fraction.text);
        assert_eq!(fraction.json()["until"], "2026-11-21T12:01:00Z");
        // 2,000 points is the most.
        let ok = app.get("/v1/services/tiktok/reports?since=2026-11-01T00:00:00Z&until=2026-11-02T09:20:00Z").await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.json()["points"].as_array().unwrap().len(), 2000);
        assert_eq!(app.get("/v1/services/myspace/reports").await.status, 404);
    }

    async fn services_and_regions_are_listed(app) {
        let services = app.get("/v1/services").await.json();
        let list = services["services"].as_array().unwrap();
        assert!(list.len() >= 25);
        let tiktok = list.iter().find(|s| s["id"] == "tiktok").unwrap();
        assert_eq!(tiktok["name"], "TikTok");
        assert_eq!(tiktok["depends_on"], json!(["oracle-cloud"]));

        let aws = app.get("/v1/services/aws").await.json();
        assert!(aws["dependents"].as_array().unwrap().contains(&json!("netflix")), "{aws}");
        let missing = app.get("/v1/services/myspace").await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.error_code(), "unknown_service");

        let regions = app.get("/v1/regions").await.json();
        let regions = regions["regions"].as_array().unwrap();
        assert!(regions.len() >= 249, "{}", regions.len());
        let de = regions.iter().find(|r| r["code"] == "DE").unwrap();
        assert_eq!(de["name"], "Germany");
        assert_eq!(de["continent"], "EU");
        assert!(de["centroid"]["lat"].as_f64().is_some());
    }

    async fn unknown_routes_and_methods_use_the_error_shape(app) {
        let answer = app.get("/v1/nope").await;
        assert_eq!(answer.status, 404);
        assert_eq!(answer.error_code(), "not_found");
        let answer = app.post_raw("/v1/services", Some("application/json"), b"{}".to_vec()).await;
        assert_eq!(answer.status, 405);
        assert_eq!(answer.error_code(), "method_not_allowed");
        // A file the Swagger UI does not have, too (it answered a bare, empty 404).
        for path in ["/docs/foo", "/docs/swagger-ui/nope.js"] {
            let answer = app.get(path).await;
            assert_eq!((answer.status, answer.error_code().as_str()), (404, "not_found"), "{path}");
        }
        assert_eq!(app.get("/docs/").await.status, 200);
    }

    /// Reads are open to web pages on any origin (a status dashboard elsewhere); reports
    /// are not (a page could otherwise make its visitors' browsers file them): a browser
    /// sends a JSON report across origins only after a preflight, which fails.
    async fn reads_are_open_across_origins_and_reports_are_not(app) {
        let origin = "https://dashboard.example";
        let allowed = |r: &reqwest::Response| crate::helpers::header(r, "access-control-allow-origin");
        for path in ["/v1/services", "/v1/services/tiktok/reports", "/v1/incidents?active=true", "/openapi.json"] {
            let read = app.client.get(app.url(path)).header("origin", origin).send().await.unwrap();
            assert_eq!((read.status().as_u16(), allowed(&read).as_deref()), (200, Some("*")), "{path}");
            assert_eq!(crate::helpers::header(&read, "access-control-expose-headers").as_deref(), Some("ETag, Retry-After"));
        }
        let preflight = |path: &str, method: &str| {
            app.client
                .request(reqwest::Method::OPTIONS, app.url(path))
                .header("origin", origin)
                .header("access-control-request-method", method)
                .send()
        };
        // Revalidating a read with If-None-Match needs a preflight: answered.
        let read = preflight("/v1/services/tiktok", "GET").await.unwrap();
        assert_eq!((read.status().as_u16(), allowed(&read).as_deref()), (204, Some("*")));
        let headers = crate::helpers::header(&read, "access-control-allow-headers").unwrap();
        assert!(headers.contains("If-None-Match") && headers.contains("Last-Event-ID"), "{headers}");
        // A report's preflight fails, on a route that takes reports and reads alike.
        let report = preflight("/v1/services/tiktok/reports", "POST").await.unwrap();
        assert_eq!((report.status().as_u16(), allowed(&report)), (405, None));
        let report = app
            .client
            .post(app.url("/v1/services/tiktok/reports"))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(json!({"problem": "login", "region": "DE"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!((report.status().as_u16(), allowed(&report)), (202, None));
        // The operator's metrics are not for web pages.
        // However its path is spelled: the router decodes `%6d`.
        for path in ["/metrics", "/%6detrics", "/metric%73"] {
            let metrics = app.client.get(app.url(path)).header("origin", origin).send().await.unwrap();
            assert_eq!((metrics.status().as_u16(), allowed(&metrics)), (200, None), "{path}");
        }
        // And a route that does not exist stays unknown.
        let unknown = preflight("/v1/nothing", "GET").await.unwrap();
        assert_eq!((unknown.status().as_u16(), allowed(&unknown)), (404, None));
    }

    /// The pages of the origins in --allowed-origins may send reports from their visitors'
    /// browsers; others still may not.
    async fn reports_are_open_to_the_allowed_origins(app, "--allowed-origins", "https://Status.example, http://localhost:3000") {
        let header = crate::helpers::header;
        let preflight = |origin: &str, path: &str| {
            app.client
                .request(reqwest::Method::OPTIONS, app.url(path))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .send()
        };
        let report = |origin: &str| {
            app.client
                .post(app.url("/v1/services/tiktok/reports"))
                .header("origin", origin)
                .header("content-type", "application/json")
                .body(json!({"problem": "login", "region": "DE"}).to_string())
                .send()
        };
        for origin in ["https://status.example", "http://localhost:3000"] {
            let asked = preflight(origin, "/v1/services/tiktok/reports").await.unwrap();
            assert_eq!(asked.status(), 204, "{origin}");
            assert_eq!(header(&asked, "access-control-allow-origin").as_deref(), Some(origin));
            assert_eq!(header(&asked, "access-control-allow-methods").as_deref(), Some("POST"));
            assert_eq!(header(&asked, "access-control-allow-headers").as_deref(), Some("Content-Type"));
            assert_eq!(header(&asked, "vary").as_deref(), Some("Origin"));
            let sent = report(origin).await.unwrap();
            assert_eq!(sent.status(), 202);
            assert_eq!(header(&sent, "access-control-allow-origin").as_deref(), Some(origin));
            assert_eq!(header(&sent, "access-control-expose-headers").as_deref(), Some("Retry-After"));
        }
        // Another origin, or a route that takes no reports: no CORS headers, as before.
        let other = preflight("https://evil.example", "/v1/services/tiktok/reports").await.unwrap();
        assert_eq!((other.status().as_u16(), header(&other, "access-control-allow-origin")), (405, None));
        let sent = report("https://evil.example").await.unwrap();
        assert_eq!((sent.status().as_u16(), header(&sent, "access-control-allow-origin")), (202, None));
        let reads = preflight("https://status.example", "/v1/services").await.unwrap();
        assert_eq!((reads.status().as_u16(), header(&reads, "access-control-allow-origin")), (405, None));
        // Reads stay open to every origin.
        let read = app.client.get(app.url("/v1/services")).header("origin", "https://status.example").send().await.unwrap();
        assert_eq!(header(&read, "access-control-allow-origin").as_deref(), Some("*"));
    }
}

impl crate::helpers::TestApp {
    /// The app's current (manual) time.
    pub fn clock_now(&self) -> time::OffsetDateTime {
        use downradar::clock::Clock;
        self.clock.now()
    }
}

/// HEAD is answered wherever GET is, with the GET's headers and no body (RFC 9110 §9.3.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_get_without_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Memory).await;
    let host = app.address.trim_start_matches("http://").to_owned();
    for path in [
        "/v1/services",
        "/v1/incidents.atom",
        "/v1/services/github/badge.svg",
    ] {
        let get = app.get(path).await;
        let mut socket = tokio::net::TcpStream::connect(&host).await.unwrap();
        let request = format!("HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a complete head");
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert_eq!(body, "", "{path}: a HEAD answer has no body");
        let length = format!("content-length: {}", get.text.len());
        assert!(
            head.to_ascii_lowercase().contains(&length),
            "{path}: {head}"
        );
    }
    // The event stream's HEAD ends at once: it subscribes to nothing.
    let mut socket = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = format!("HEAD /v1/events HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
        .await
        .expect("a HEAD of the event stream ends")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("text/event-stream"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");

    let refused = app
        .post_raw("/v1/services", Some("application/json"), b"{}".to_vec())
        .await;
    assert_eq!(refused.status, 405);
    let allow = app
        .client
        .post(app.url("/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::helpers::header(&allow, "allow").as_deref(),
        Some("GET, HEAD")
    );
    // A path the router decodes (`%73` is `s`) is the same route, with the same methods.
    let encoded = app
        .client
        .delete(app.url("/v1/%73ervices/tiktok/%72eports"))
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.status(), 405);
    assert_eq!(
        crate::helpers::header(&encoded, "allow").as_deref(),
        Some("GET, HEAD, POST")
    );
    // The spec and the docs answer HEAD too, so they say so.
    for path in ["/openapi.json", "/docs"] {
        let allow = app.client.post(app.url(path)).send().await.unwrap();
        assert_eq!(allow.status(), 405, "{path}");
        assert_eq!(
            crate::helpers::header(&allow, "allow").as_deref(),
            Some("GET, HEAD"),
            "{path}"
        );
        // (`/docs` redirects to `/docs/`, which the client follows.)
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert!(head.status().is_success(), "{path}: {}", head.status());
    }
}

/// Without the detector there is no expectation: the map leaves it and the ratio out (absent,
/// not null, as its schema says), as the series does.
#[tokio::test]
async fn without_a_baseline_the_map_and_the_series_leave_the_expectation_out() {
    let app =
        crate::helpers::spawn_app_with(crate::helpers::Backend::Memory, &["--no-detector"]).await;
    let answer = app
        .report(
            "tiktok",
            &json!({"problem": "login", "region": "DE", "client_id": "a"}),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    app.clock.advance(Duration::from_secs(60));
    let map = app.get("/v1/services/tiktok/map").await.json();
    let de = &map["countries"][0];
    assert_eq!(
        (&de["region"], &de["reports"]),
        (&"DE".into(), &1.into()),
        "{map}"
    );
    assert!(
        de.get("expected").is_none() && de.get("ratio").is_none(),
        "{map}"
    );
    let series = app.get("/v1/services/tiktok/reports").await.json();
    let points = series["points"].as_array().unwrap();
    assert!(
        points.iter().all(|p| p.get("expected").is_none()),
        "{series}"
    );
}

on_both_stores! {
    /// A deployment two days old has two days of history: a week's map and series expect
    /// reports only from the service's first report on. (Expected over the whole week, the
    /// map said every country had under a third of its usual reports.)
    async fn expectations_begin_with_the_services_history(app, "--detector-interval", "1s") {
        use downradar::catalog::{Problem, ServiceId};
        use downradar::clock::Clock;
        use downradar::store::{Cell, HistoryCount};
        let start = app.clock.now().unix_timestamp();
        // The detector's first tick, at `start`, made its model of the service.
        crate::helpers::poll(&app, "/v1/services/tiktok/reports", |series| {
            series["points"][0].get("expected").is_some()
        })
        .await;
        let (days, per_min) = (2, 10);
        let counts: Vec<HistoryCount> = (0..days * 1440)
            .map(|m| HistoryCount {
                service: ServiceId::parse("tiktok").unwrap(),
                bucket: start + m * 60,
                cell: Cell {
                    region: downradar::regions::RegionCode::parse("DE").unwrap(),
                    problem: Problem::parse("login").unwrap(),
                },
                count: per_min,
            })
            .collect();
        app.store.add_history(&counts).await.unwrap();
        app.clock.advance(Duration::from_secs(days as u64 * 86_400));
        // As usual, over the days it has (once the detector has learned them).
        let week = "/v1/services/tiktok/map?window=7d";
        let map = crate::helpers::poll_for(&app, week, Duration::from_secs(60), |map| {
            map["countries"][0]["ratio"].as_f64().is_some_and(|r| (0.8..1.25).contains(&r))
        })
        .await;
        assert_eq!(map["countries"][0]["reports"], days * 1440 * per_min as i64, "{map}");
        // The last day alone is within the history: the same.
        let day = app.get("/v1/services/tiktok/map?window=24h").await.json();
        let ratio = day["countries"][0]["ratio"].as_f64().unwrap();
        assert!((0.8..1.25).contains(&ratio), "{day}");
        // The hourly series over the week: no expectation before the first report, one
        // from then on.
        let start_hour = start - start.rem_euclid(3600);
        let since = time::OffsetDateTime::from_unix_timestamp(start_hour - 5 * 86_400).unwrap();
        let series = app
            .get(&format!(
                "/v1/services/tiktok/reports?resolution=1h&region=DE&since={}",
                since.format(&time::format_description::well_known::Rfc3339).unwrap()
            ))
            .await
            .json();
        let first_hour = 5 * 24;
        for (i, point) in series["points"].as_array().unwrap().iter().enumerate() {
            let i = i as i64;
            assert_eq!(
                point.get("expected").is_some(),
                i >= first_hour,
                "point {i}, history from point {first_hour}: {point}"
            );
            if i > first_hour && point["count"] == 600 {
                let expected = point["expected"].as_f64().unwrap();
                assert!((480.0..750.0).contains(&expected), "{point}");
            }
            // The hour the history began in, half an hour before its end: half an hour's.
            if i == first_hour {
                assert_eq!(point["count"], 300, "{point}");
                let expected = point["expected"].as_f64().unwrap();
                assert!((240.0..375.0).contains(&expected), "{point}");
            }
        }
    }
}

on_both_stores! {
    /// A series read again is served from what this process holds of its settled buckets and
    /// the store's newer ones: reports just made show at once, and so does history added to
    /// settled buckets, which moves the service's generation (as a revocation does: see the
    /// store tests).
    async fn a_series_read_again_shows_every_change(app, "--no-detector") {
        use downradar::catalog::{Problem, ServiceId};
        use downradar::clock::Clock;
        use downradar::store::{Cell, HistoryCount};
        let report = |id: String| {
            let app = &app;
            async move {
                let body = json!({"problem": "login", "region": "DE", "client_id": id});
                assert_eq!(app.report("tiktok", &body).await.json()["counted"], true);
            }
        };
        let total = || {
            let app = &app;
            async move {
                let series = app.get("/v1/services/tiktok/reports?resolution=1m").await.json();
                series["total"].as_u64().unwrap()
            }
        };
        report("a".into()).await;
        app.clock.advance(Duration::from_secs(300));
        assert_eq!(total().await, 1);
        // Twice in a row, the same; a report now shows at once.
        assert_eq!(total().await, 1);
        report("b".into()).await;
        assert_eq!(total().await, 2);
        // History added to a settled minute shows at once.
        let minute = app.clock.now().unix_timestamp() / 60 * 60 - 240;
        app.store
            .add_history(&[HistoryCount {
                service: ServiceId::parse("tiktok").unwrap(),
                bucket: minute,
                cell: Cell {
                    region: downradar::regions::RegionCode::parse("US").unwrap(),
                    problem: Problem::parse("login").unwrap(),
                },
                count: 5,
            }])
            .await
            .unwrap();
        assert_eq!(total().await, 7);
        // Minutes on, the settled ones held and the newer read: the same.
        app.clock.advance(Duration::from_secs(120));
        report("c".into()).await;
        assert_eq!(total().await, 8);
        assert_eq!(total().await, 8);
    }
}
