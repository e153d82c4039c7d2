//! `downradar simulate --target`: the real binary sends a simulated day to a running app.

use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;

use crate::helpers::{Backend, spawn_app};

/// The number just before `label` in `text` ("... 123 counted" for "counted").
fn number_before(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text:?}"));
    let digits: String = text[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: no number before {label:?} in {text:?}"))
}

/// Runs `downradar simulate` with `flags`, failing the test if it takes longer than `limit`.
async fn run_simulate(flags: &[&str], limit: Duration) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
        .arg("simulate")
        .args(flags)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(limit, run)
        .await
        .expect("simulate finishes")
        .expect("simulate runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_day_arrives_as_distinct_counted_reports() {
    let app = spawn_app(Backend::Memory).await;
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.json");
    let began = Instant::now();
    let truth = truth.to_str().expect("a UTF-8 temp path");
    let output = run_simulate(
        &[
            "--target",
            &app.address,
            "--services",
            "3",
            "--days",
            "1",
            "--speed",
            "86400",
            "--seed",
            "2",
            "--truth",
            truth,
        ],
        Duration::from_secs(180),
    )
    .await;
    let took = began.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);

    let summary = stderr.lines().last().unwrap();
    assert!(summary.contains("end of the simulated period"), "{stderr}");
    assert!(summary.contains("(100.0%)"), "{stderr}");
    let sent: u64 = summary
        .split_once(" sent ")
        .and_then(|(_, rest)| rest.split_once(':'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no sent count in {summary:?}"));
    assert!(sent > 1000, "{summary}");
    assert_eq!(number_before(summary, " counted,"), sent, "{summary}");
    assert_eq!(number_before(summary, " not counted"), 0, "{summary}");
    assert_eq!(number_before(summary, " 503"), 0, "{summary}");
    assert_eq!(number_before(summary, " errors"), 0, "{summary}");
    // About 13,000 reports: a second at 86400x in a release build; a debug build's client
    // is slower and lags, which the simulation must absorb without losing a report. How long
    // that takes depends on the machine, so it is reported, not asserted (the timeout above
    // only catches a hang).
    eprintln!("a simulated day took {took:?}");

    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(truth).expect("truth written")).unwrap();
    let services: Vec<String> = truth["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(services.len(), 3, "{truth}");

    // The app counts by its own clock: sum a wide window around it.
    let now = app.clock_now();
    let since = (now - time::Duration::hours(3)).format(&Rfc3339).unwrap();
    let until = (now + time::Duration::hours(3)).format(&Rfc3339).unwrap();
    let mut total = 0;
    for id in &services {
        let path = format!("/v1/services/{id}/reports?resolution=1h&since={since}&until={until}");
        let series = app.get(&path).await;
        assert_eq!(series.status, 200, "{}", series.text);
        total += series.json()["total"].as_u64().unwrap();
    }
    assert_eq!(total, sent, "the app counted {total} of {sent} reports");
}

#[tokio::test]
async fn an_unreachable_target_fails_at_once_with_a_clear_message() {
    let port = crate::helpers::free_port();
    let target = format!("http://127.0.0.1:{port}");
    let output = run_simulate(
        &["--target", &target, "--services", "1", "--days", "1"],
        Duration::from_secs(20),
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

/// A server whose store is down answers `/healthz` but refuses every report with a 503: the
/// simulation says so and gives up, as it does when every request fails.
#[tokio::test]
async fn a_target_that_refuses_every_report_fails_after_ten_seconds() {
    let mut app = spawn_app(Backend::Redis).await;
    app.redis.as_mut().expect("a private redis-server").kill();
    let output = run_simulate(
        &[
            "--target",
            &app.address,
            "--services",
            "1",
            "--days",
            "1",
            "--speed",
            "3600",
        ],
        Duration::from_secs(60),
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("failed for 10 s; giving up"), "{stderr}");
    assert!(stderr.contains("first failure: 503"), "{stderr}");
    let summary = stderr
        .lines()
        .find(|line| line.contains("stopped: the target fails"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    assert!(number_before(summary, " 503") > 0, "{summary}");
    assert_eq!(number_before(summary, " counted,"), 0, "{summary}");
}
