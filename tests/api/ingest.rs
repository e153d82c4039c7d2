//! `POST /v1/services/{id}/reports`: every answer the issue lists, dedup and proxies.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Backend, spawn_app_with};
use crate::on_both_stores;

on_both_stores! {
    async fn report_by_region_is_counted_once_per_reporter(app) {
        let first = app.report("tiktok", &json!({"problem": "login", "region": "DE"})).await;
        assert_eq!(first.status, 202, "{}", first.text);
        let body = first.json();
        assert_eq!(body["counted"], true);
        assert_eq!(body["region"], "DE");
        let bucket = time::OffsetDateTime::parse(body["bucket"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(bucket.unix_timestamp() % 60, 0, "bucket is aligned: {body}");

        // Same address, same (absent) client id: already counted.
        let again = app.report("tiktok", &json!({"problem": "app", "region": "US"})).await;
        assert_eq!(again.status, 202);
        assert_eq!(again.json()["counted"], false);

        // Another install behind the same address is another reporter...
        let other = app.report("tiktok", &json!({"problem": "login", "region": "DE", "client_id": "install-2"})).await;
        assert_eq!(other.json()["counted"], true);
        // ...and dedup is per service.
        let elsewhere = app.report("netflix", &json!({"problem": "login", "region": "DE"})).await;
        assert_eq!(elsewhere.json()["counted"], true);
    }

    async fn report_by_location_resolves_the_country(app) {
        let berlin = app.report("tiktok", &json!({"problem": "login", "location": {"lat": 52.52, "lon": 13.405}})).await;
        assert_eq!(berlin.status, 202, "{}", berlin.text);
        assert_eq!(berlin.json()["region"], "DE");
        let sao_paulo = app.report("tiktok", &json!({"problem": "feed", "location": {"lat": -23.5505, "lon": -46.6333}, "client_id": "b"})).await;
        assert_eq!(sao_paulo.json()["region"], "BR");
    }

    async fn unknown_service_is_404(app) {
        let answer = app.report("myspace", &json!({"problem": "login", "region": "DE"})).await;
        assert_eq!(answer.status, 404);
        assert_eq!(answer.error_code(), "unknown_service");
    }

    async fn unknown_problem_is_422_listing_the_allowed_ones(app) {
        let answer = app.report("tiktok", &json!({"problem": "wifi", "region": "DE"})).await;
        assert_eq!(answer.status, 422);
        assert_eq!(answer.error_code(), "unknown_problem");
        assert_eq!(
            answer.json()["details"]["allowed"],
            json!(["app", "login", "video-upload", "feed", "server-connection"])
        );
    }

    async fn bad_regions_and_locations_are_422(app) {
        for (body, code) in [
            (json!({"problem": "login", "region": "XX"}), "unknown_region"),
            (json!({"problem": "login", "region": "DEU"}), "unknown_region"),
            (json!({"problem": "login", "location": {"lat": 91.0, "lon": 0.0}}), "invalid_coordinates"),
            (json!({"problem": "login", "location": {"lat": 0.0, "lon": -180.5}}), "invalid_coordinates"),
            (json!({"problem": "login", "location": {"lat": 30.0, "lon": -40.0}}), "location_outside_regions"),
            (json!({"problem": "login"}), "invalid_report"),
            (json!({"problem": "login", "region": "DE", "location": {"lat": 52.5, "lon": 13.4}}), "invalid_report"),
            (json!({"problem": "login", "region": "DE", "client_id": "x".repeat(65)}), "invalid_report"),
            (json!({"problem": "login", "region": "DE", "client_id": ""}), "invalid_report"),
            (json!({"problem": "login", "region": "DE", "extra": 1}), "invalid_report"),
            (json!({"problem": 7, "region": "DE"}), "invalid_report"),
            (json!(["login", "DE"]), "invalid_report"),
            // An array of the fields in order is not a report either (serde would take it).
            (json!(["login", "DE", null, "install-1"]), "invalid_report"),
            (json!("login"), "invalid_report"),
            (json!(null), "invalid_report"),
            // A location is an object too: an array in GeoJSON's order would swap lat and lon.
            (json!({"problem": "login", "location": [13.4, 52.5]}), "invalid_report"),
            (json!({"problem": "login", "location": "Berlin"}), "invalid_report"),
        ] {
            let answer = app.report("tiktok", &body).await;
            assert_eq!(answer.status, 422, "{body} -> {}", answer.text);
            assert_eq!(answer.error_code(), code, "{body}");
            assert!(!answer.text.contains("struct"), "no Rust types in messages: {}", answer.text);
        }
        // A key given twice is refused inside a location as at the top level (the last `lat`
        // would have counted a report from Berlin in Gabon).
        for body in [
            r#"{"problem":"login","location":{"lat":52.5,"lon":13.4,"lat":0}}"#,
            r#"{"problem":"login","region":"DE","region":"FR"}"#,
        ] {
            let answer = app.post_raw("/v1/services/tiktok/reports", Some("application/json"), body.into()).await;
            assert_eq!((answer.status, answer.error_code().as_str()), (422, "invalid_report"), "{body}");
            assert!(answer.text.contains("duplicate field"), "{}", answer.text);
        }
        // What serde quotes of the input is cut like every other echo (64 characters).
        let long = "k".repeat(3000);
        for body in [json!({"problem": "login", "region": "DE", &long: 1}), json!({"problem": "login", "location": &long})] {
            let answer = app.report("tiktok", &body).await;
            assert_eq!(answer.error_code(), "invalid_report");
            let message = answer.json()["message"].as_str().unwrap().to_owned();
            assert!(message.contains(&long[..64]) && !message.contains(&long[..65]), "{message}");
            assert!(message.len() < 250, "{message}");
        }
        // A huge coordinate is not echoed digit by digit.
        let huge = app.report("tiktok", &json!({"problem": "login", "location": {"lat": 1e308, "lon": 0.0}})).await;
        assert_eq!(huge.error_code(), "invalid_coordinates");
        assert!(huge.text.contains("latitude 1e308 is out of range") && huge.text.len() < 200, "{}", huge.text);
        // Valid JSON, but a number no coordinate can hold: invalid, not malformed.
        let body = br#"{"problem":"login","location":{"lat":1e400,"lon":0}}"#.to_vec();
        let beyond = app.post_raw("/v1/services/tiktok/reports", Some("application/json"), body).await;
        assert_eq!((beyond.status, beyond.error_code().as_str()), (422, "invalid_report"), "{}", beyond.text);
        assert!(beyond.text.contains("out of range"), "{}", beyond.text);
    }

    async fn malformed_json_is_400(app) {
        // Not JSON however early serde finds something else wrong: an unknown field, or a
        // value of the wrong type, before the body breaks off.
        for body in [&b"{\"problem\": "[..], b"not json", b"", b"{\"problem\":\"login\",}",
                     b"{\"a\":", b"{\"problem\":[", b"{\"problem\":\"login\",\"region\":\"DE\",\"extra\""] {
            let answer = app.post_raw("/v1/services/tiktok/reports", Some("application/json"), body.to_vec()).await;
            assert_eq!(answer.status, 400, "{:?} -> {}", String::from_utf8_lossy(body), answer.text);
            assert_eq!(answer.error_code(), "malformed_json");
        }
    }

    async fn wrong_content_type_is_415(app) {
        let body = json!({"problem": "login", "region": "DE"}).to_string().into_bytes();
        for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None,
                   Some("application/jsonx"), Some("application/json-seq")] {
            let answer = app.post_raw("/v1/services/tiktok/reports", ct, body.clone()).await;
            assert_eq!(answer.status, 415, "{ct:?}");
            assert_eq!(answer.error_code(), "unsupported_media_type");
        }
        // Parameters are ignored (JSON is UTF-8; its media type defines none, RFC 8259 §11).
        for ct in ["application/json; charset=utf-8", "application/json ; charset=\"UTF-8\"",
                   "Application/JSON", "application/json;", "application/json; charset=us-ascii",
                   "application/json; x=\"a;b\""] {
            let answer = app.post_raw("/v1/services/tiktok/reports", Some(ct), body.clone()).await;
            assert_eq!(answer.status, 202, "{ct}: {}", answer.text);
        }
        // A compressed body is refused as such, not read as malformed JSON.
        let url = app.url("/v1/services/tiktok/reports");
        for (encoding, status) in [("gzip", 415), ("identity", 202)] {
            let answer = app.client.post(&url).header("content-type", "application/json")
                .header("content-encoding", encoding).body(body.clone()).send().await.unwrap();
            let answer = crate::helpers::Answer::from(answer).await;
            assert_eq!(answer.status, status, "{encoding}: {}", answer.text);
            if status == 415 {
                assert_eq!(answer.error_code(), "unsupported_media_type");
            }
        }
        // The coding is quoted, cut as every echo is.
        let long = "z".repeat(200);
        let answer = app.client.post(&url).header("content-type", "application/json")
            .header("content-encoding", &long).body(body.clone()).send().await.unwrap();
        let answer = crate::helpers::Answer::from(answer).await;
        assert_eq!(answer.status, 415);
        let message = answer.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&long[..64]) && !message.contains(&long[..65]), "{message}");
    }

    async fn body_over_4_kib_is_413(app) {
        let padding = "x".repeat(4096);
        let big = json!({"problem": "login", "region": "DE", "client_id": padding}).to_string().into_bytes();
        let answer = app.post_raw("/v1/services/tiktok/reports", Some("application/json"), big.clone()).await;
        assert_eq!(answer.status, 413);
        assert_eq!(answer.error_code(), "payload_too_large");

        // Without a Content-Length (chunked), the limit holds while reading.
        let stream = futures_util::stream::iter(big.chunks(1000).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
        let response = app.client.post(app.url("/v1/services/tiktok/reports"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send().await.unwrap();
        assert_eq!(response.status().as_u16(), 413);

        // Exactly at the limit is fine (as far as size goes).
        let mut exact = json!({"problem": "login", "region": "DE", "client_id": "c"}).to_string().into_bytes();
        exact.resize(4096, b' ');
        let answer = app.post_raw("/v1/services/tiktok/reports", Some("application/json"), exact).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
    }
}

/// Whether a `login` report to tiktok from DE, with the install id `id`, from the client
/// address `from` (forwarded by a trusted proxy), was counted.
async fn counted_from(
    app: &crate::helpers::TestApp,
    id: Option<&str>,
    from: &str,
) -> serde_json::Value {
    let mut body = json!({"problem": "login", "region": "DE"});
    if let Some(id) = id {
        body["client_id"] = json!(id);
    }
    app.report_with("tiktok", &body, &[("x-forwarded-for", from)])
        .await
        .json()["counted"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_window_expires_on_the_clock() {
    // The embedded store follows the injected clock; Redis expires markers on its own clock,
    // which a test cannot move without waiting.
    let app = spawn_app_with(Backend::Memory, &["--dedup-window", "15m"]).await;
    let body = json!({"problem": "login", "region": "DE"});
    assert_eq!(app.report("tiktok", &body).await.json()["counted"], true);
    app.clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(app.report("tiktok", &body).await.json()["counted"], false);
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(app.report("tiktok", &body).await.json()["counted"], true);
}

on_both_stores! {
    async fn a_trusted_proxys_forwarded_for_names_the_reporter(app, "--trusted-proxies", "127.0.0.1,::1") {
        let body = json!({"problem": "login", "region": "DE"});
        let a = app.report_with("tiktok", &body, &[("x-forwarded-for", "198.51.100.1")]).await;
        let b = app.report_with("tiktok", &body, &[("x-forwarded-for", "198.51.100.2")]).await;
        let a_again = app.report_with("tiktok", &body, &[("x-forwarded-for", "6.6.6.6, 198.51.100.1")]).await;
        assert_eq!(a.json()["counted"], true);
        assert_eq!(b.json()["counted"], true);
        assert_eq!(a_again.json()["counted"], false, "the right-most untrusted hop is the reporter");
    }

    async fn forwarded_for_from_an_untrusted_peer_is_ignored(app) {
        let body = json!({"problem": "login", "region": "DE"});
        let a = app.report_with("tiktok", &body, &[("x-forwarded-for", "198.51.100.1")]).await;
        let b = app.report_with("tiktok", &body, &[("x-forwarded-for", "198.51.100.2")]).await;
        assert_eq!(a.json()["counted"], true);
        assert_eq!(b.json()["counted"], false, "both come from the peer address");
    }

    async fn reporters_per_address_are_limited(app, "--max-reporters-per-address", "2", "--trusted-proxies", "127.0.0.1,::1") {
        let report = |id: &'static str, from: &'static str| counted_from(&app, Some(id), from);
        assert_eq!(report("a", "198.51.100.1").await, true);
        assert_eq!(report("b", "198.51.100.1").await, true);
        assert_eq!(report("c", "198.51.100.1").await, false, "a third install at one address");
        assert_eq!(report("c", "198.51.100.2").await, true, "another address");
        // By default an IPv6 client is limited per /64: another /64 is another address.
        assert_eq!(report("a", "2001:db8:0:1::1").await, true);
        assert_eq!(report("b", "2001:db8:0:1::2").await, true);
        assert_eq!(report("c", "2001:db8:0:1::3").await, false, "the same /64");
        assert_eq!(report("c", "2001:db8:0:2::1").await, true, "another /64");
    }

    /// With `--ipv6-limit-prefix 56`, the limit counts a whole /56 as one address: a client
    /// rotating through its /64s gets no more reporters counted. Dedup still tells its
    /// reporters apart by their /64.
    async fn ipv6_clients_may_be_limited_per_56(app, "--max-reporters-per-address", "2", "--trusted-proxies", "127.0.0.1,::1", "--ipv6-limit-prefix", "56") {
        let report = |id: Option<&'static str>, from: &'static str| counted_from(&app, id, from);
        assert_eq!(report(None, "2001:db8:0:1::1").await, true);
        assert_eq!(report(None, "2001:db8:0:1::1").await, false, "the same reporter");
        assert_eq!(report(None, "2001:db8:0:2::1").await, true, "another /64, another reporter");
        assert_eq!(report(None, "2001:db8:0:3::1").await, false, "a third in the /56");
        assert_eq!(report(Some("x"), "2001:db8:0:ff::1").await, false, "and a fourth");
        assert_eq!(report(None, "2001:db8:0:100::1").await, true, "another /56");
        // IPv4 is unchanged.
        assert_eq!(report(Some("a"), "198.51.100.1").await, true);
        assert_eq!(report(Some("b"), "198.51.100.1").await, true);
        assert_eq!(report(Some("c"), "198.51.100.1").await, false);
    }
}

/// The store freezes: answers are 503 with Retry-After within 2 s, and a full queue is 503 at
/// once. (Only Redis can be made slow or unavailable; the embedded store cannot fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_store_is_503_within_two_seconds_and_full_queue_is_503_at_once() {
    let app = spawn_app_with(Backend::Redis, &["--queue-capacity", "4"]).await;
    let redis = app.redis.as_ref().unwrap();
    assert_eq!(
        app.report("tiktok", &json!({"problem": "login", "region": "DE"}))
            .await
            .status,
        202
    );
    redis.freeze();
    let started = Instant::now();
    let requests = (0..24).map(|i| {
        let body = json!({"problem": "login", "region": "DE", "client_id": format!("frozen-{i}")});
        let app = &app;
        async move { (app.report("tiktok", &body).await, started.elapsed()) }
    });
    let answers = futures_util::future::join_all(requests).await;
    redis.thaw();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for (answer, elapsed) in &answers {
        assert_eq!(answer.status, 503, "{}", answer.text);
        assert_eq!(answer.retry_after.as_deref(), Some("1"));
        assert!(
            *elapsed < Duration::from_secs(2),
            "answered after {elapsed:?}"
        );
        *codes.entry(answer.error_code()).or_default() += 1;
    }
    assert!(
        codes.get("overloaded").copied().unwrap_or(0) > 0,
        "{codes:?}"
    );
    assert!(
        codes.get("unavailable").copied().unwrap_or(0) > 0,
        "{codes:?}"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    // The frozen writes run once Redis thaws, and are revoked: only the first report counts.
    let mut stored = redis.sum_of_counts(60);
    for _ in 0..50 {
        if stored == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = redis.sum_of_counts(60);
    }
    assert_eq!(stored, 1, "reports answered 503 must not stay counted");
}

/// A reporter answered 503 while Redis stalled who retries at once is told the truth: not
/// "already counted" by the report that was answered 503 and is about to be revoked (which
/// left the reporter counted nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_503_is_told_the_truth() {
    let app = spawn_app_with(Backend::Redis, &["--no-detector"]).await;
    let redis = app.redis.as_ref().unwrap();
    let warm = json!({"problem": "login", "region": "DE", "client_id": "warm"});
    assert_eq!(app.report("tiktok", &warm).await.status, 202);
    let body = json!({"problem": "login", "region": "DE", "client_id": "retrying"});
    redis.freeze();
    let first = app.report("tiktok", &body).await;
    assert_eq!(first.status, 503, "{}", first.text);
    // The retry goes out while Redis is still frozen, behind the first write.
    let (retry, ()) = tokio::join!(app.report("tiktok", &body), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        redis.thaw();
    });
    // Once the first report's revocation is in (its token in the revocation hash), the store
    // holds what the answers said. (Not the metrics: tests share one recorder per process.)
    let mut conn = redis.connection().unwrap();
    let mut settled = false;
    for _ in 0..100 {
        let hashes: Vec<String> = redis::cmd("KEYS")
            .arg("dr:{tiktok}:revoked:*")
            .query(&mut conn)
            .unwrap();
        if !hashes.is_empty() {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled, "the first report was never revoked");
    let stored = redis.sum_of_counts(60) - 1;
    match retry.status {
        // Counted, or "already counted": either way the reporter must be in the counts.
        202 => assert_eq!(stored, 1, "answered {} with {stored} stored", retry.text),
        503 => assert_eq!(stored, 0, "answered 503 with {stored} stored"),
        other => panic!("unexpected {other}: {}", retry.text),
    }
}

/// A report refused before its chunked body ended closes its connection: left open, the
/// HTTP layer would wait for the rest of a body that need never come, and any client could
/// hold the server's sockets that way. A chunked report read to its end leaves the
/// connection open for the next request.
#[tokio::test]
async fn a_refused_report_whose_body_never_ends_closes_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(Backend::Memory, &[]).await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let head = |path: &str, content_type: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        )
    };
    for (path, content_type, status) in [
        ("/v1/services/myspace/reports", "application/json", "404"),
        ("/v1/services/github/reports", "text/plain", "415"),
    ] {
        let mut socket = tokio::net::TcpStream::connect(&host).await.unwrap();
        let request = head(path, content_type) + "5\r\n{\"pro\r\n";
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{path}: the connection stays open"))
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
    }

    let mut socket = tokio::net::TcpStream::connect(&host).await.unwrap();
    let body = r#"{"problem":"git","region":"DE"}"#;
    let request = head("/v1/services/github/reports", "application/json")
        + &format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    socket.write_all(request.as_bytes()).await.unwrap();
    // Reads one whole answer: its head, then the JSON body its Content-Length gives.
    async fn answer(socket: &mut tokio::net::TcpStream) -> String {
        let mut received = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
            let mut chunk = [0; 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed after {text:?}");
            received.extend_from_slice(&chunk[..n]);
        }
    }
    let accepted = answer(&mut socket).await;
    assert!(accepted.starts_with("HTTP/1.1 202"), "{accepted}");
    assert!(
        !accepted.to_ascii_lowercase().contains("connection: close"),
        "{accepted}"
    );
    let next = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
    socket.write_all(next.as_bytes()).await.unwrap();
    let healthy = answer(&mut socket).await;
    assert!(healthy.starts_with("HTTP/1.1 200"), "{healthy}");
}
