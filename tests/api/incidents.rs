//! `GET /v1/incidents`: filters and cursor pages over incidents written as the detector writes
//! them.

use downradar::detector::EventType;
use serde_json::Value;

use crate::events::{commit, event};
use crate::helpers::test_epoch;
use crate::on_both_stores;

on_both_stores! {
    /// Pages of every size list every incident once, newest first, even when many started
    /// in the same second; filters combine.
    async fn incidents_page_and_filter(app, "--no-detector") {
        let base = test_epoch().unix_timestamp() - 7200;
        let mut events = Vec::new();
        // Five incidents in one second, and three others.
        for service in ["discord", "github", "netflix", "slack", "tiktok"] {
            events.push(event(EventType::Opened, service, base + 600, &["US"]));
        }
        events.push(event(EventType::Opened, "tiktok", base, &["DE"]));
        events.push(event(EventType::Opened, "github", base + 1200, &["DE", "US"]));
        events.push(event(EventType::Resolved, "netflix", base + 600, &["US"]));
        commit(app.store.as_ref(), &events).await;
        let ids = |page: &Value| -> Vec<String> {
            page["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let all = ids(&app.get("/v1/incidents").await.json());
        let expected: Vec<String> = [
            ("github", 1200),
            ("tiktok", 600),
            ("slack", 600),
            ("netflix", 600),
            ("github", 600),
            ("discord", 600),
            ("tiktok", 0),
        ]
        .iter()
        .map(|(s, at)| format!("{s}-{}", base + at))
        .collect();
        assert_eq!(all, expected);
        for size in 1..=4 {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/v1/incidents?limit={size}&cursor={c}"),
                    None => format!("/v1/incidents?limit={size}"),
                };
                let page = app.get(&path).await.json();
                seen.extend(ids(&page));
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
                assert!(seen.len() <= expected.len(), "pages of {size} go on: {seen:?}");
            }
            assert_eq!(seen, expected, "pages of {size}");
        }
        let filtered = |query: &str| {
            let path = format!("/v1/incidents?{query}");
            let app = &app;
            async move { ids(&app.get(&path).await.json()) }
        };
        assert_eq!(filtered("region=DE").await, [expected[0].clone(), expected[6].clone()]);
        assert_eq!(filtered("region=DE&service=tiktok").await, [expected[6].clone()]);
        assert_eq!(filtered("active=false").await, [expected[3].clone()]);
        assert_eq!(filtered("active=true&region=US").await.len(), 5);
        assert_eq!(filtered("scope=regional").await, expected);
        assert!(filtered("scope=global").await.is_empty());
        assert!(filtered("partial=true").await.is_empty());
        let since = time::OffsetDateTime::from_unix_timestamp(base + 600).unwrap();
        let since = since.format(&time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(filtered(&format!("since={since}")).await, expected[..6]);
        assert_eq!(filtered(&format!("until={since}")).await, expected[6..]);
        // Starts are whole seconds: a later fraction of one leaves that second out.
        let later = since.replace('Z', ".5Z");
        let after: Vec<String> = expected[..6]
            .iter()
            .filter(|id| id.rsplit('-').next().unwrap().parse::<i64>().unwrap() > base + 600)
            .cloned()
            .collect();
        assert!(after.len() < 6);
        assert_eq!(filtered(&format!("since={later}")).await, after);
        // Any RFC 3339 time is a filter, as any range is: before 1970 there is nothing.
        for query in ["since=0001-01-01T00:00:00Z", "until=1969-12-31T23:59:59Z"] {
            let answer = app.get(&format!("/v1/incidents?{query}")).await;
            assert_eq!(answer.status, 200, "{query}: {}", answer.text);
        }
        assert!(filtered("until=1969-12-31T23:59:59Z").await.is_empty());
    }
}

on_both_stores! {
    /// An open incident's evidence ends with the bucket in progress left out: the last point
    /// is a rate over the part of it that has passed, and the regions' and problems' rates
    /// are over whole buckets, as the incident's own are. (The last point of a minute had
    /// divided its reports by the whole minute: half the rate, halfway through.)
    async fn an_open_incidents_evidence_rates_are_over_the_time_passed(app, "--no-detector", "--bucket", "10s") {
        use downradar::catalog::{Problem, ServiceId};
        use downradar::regions::RegionCode;
        use downradar::store::{Cell, HistoryCount};
        let now = test_epoch().unix_timestamp();
        let start = now - 600;
        // Six reports every ten seconds from a quarter hour before, to the bucket in progress
        // (30 s into this minute).
        let counts: Vec<HistoryCount> = (now - 900..now + 40)
            .step_by(10)
            .map(|bucket| HistoryCount {
                service: ServiceId::parse("tiktok").unwrap(),
                bucket,
                cell: Cell {
                    region: RegionCode::parse("US").unwrap(),
                    problem: Problem::parse("app").unwrap(),
                },
                count: 6,
            })
            .collect();
        app.store.add_history(&counts).await.unwrap();
        commit(app.store.as_ref(), &[event(EventType::Opened, "tiktok", start, &["US"])]).await;
        // 35 s into the minute: its buckets at :00, :10 and :20 are whole, :30 is not.
        app.clock.advance(std::time::Duration::from_secs(35));
        let detail = app.get(&format!("/v1/incidents/tiktok-{start}")).await.json();
        let evidence = &detail["evidence"];
        assert_eq!(evidence["resolution"], "1m", "{evidence}");
        let series = evidence["series"].as_array().unwrap();
        let last = series.last().unwrap();
        let this_minute = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
        let this_minute = this_minute.format(&time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(last["at"], this_minute, "{evidence}");
        for point in series.iter().filter(|p| p["observed_per_min"].as_f64() > Some(0.0)) {
            assert_eq!(point["observed_per_min"], 36.0, "{point}");
        }
        assert_eq!(evidence["regions"][0]["observed_per_min"], 36.0, "{evidence}");
        assert_eq!(evidence["problems"][0]["observed_per_min"], 36.0, "{evidence}");
    }
}
