//! deploy/grafana-dashboard.json and deploy/prometheus-alerts.yml name only metrics the server exposes (the
//! list in `metrics_where`), so a renamed metric cannot silently empty a panel or disarm an alert.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::metrics_where::METRICS;

fn repo_file(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `xindao_*` metric families an expression names (`_bucket`, `_sum`, `_count`, `_total` stripped).
fn families(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("xindao_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        found.insert(family.to_string());
        rest = &tail[end..];
    }
    found
}

fn assert_known(source: &str, expr: &str) {
    let known: BTreeSet<&str> = METRICS.iter().map(|(name, _)| *name).collect();
    for family in families(expr) {
        assert!(
            known.contains(family.as_str()),
            "{source} names {family}, which the server does not expose: {expr}"
        );
    }
}

#[test]
fn the_dashboard_names_only_existing_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/grafana-dashboard.json")).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            assert_known(panel["title"].as_str().unwrap_or("panel"), expr);
            exprs += 1;
        }
    }
    let all = dashboard.to_string();
    for wanted in [
        "xindao_connections",
        "xindao_messages_committed",
        "xindao_commit_wait_seconds",
        "xindao_slow_consumers",
        "xindao_bus_receive_lag_seconds",
        "xindao_errors",
        "xindao_bus_connected",
    ] {
        assert!(all.contains(wanted), "the dashboard shows {wanted}");
    }
    assert!(exprs >= 12, "{exprs} queries");
}

#[test]
fn the_alerts_name_only_existing_metrics() {
    let rules = repo_file("deploy/prometheus-alerts.yml");
    let mut alerts = 0;
    let mut exprs = 0;
    for line in rules.lines() {
        let line = line.trim();
        if line.starts_with("- alert:") {
            alerts += 1;
        }
        if let Some(expr) = line.strip_prefix("expr:") {
            assert_known("prometheus-alerts.yml", expr);
            exprs += 1;
        }
    }
    assert_eq!(alerts, exprs, "every alert has one expr");
    assert!(alerts >= 8, "{alerts} alerts");
}

#[test]
fn the_check_finds_an_unknown_metric() {
    let names = families("rate(xindao_nope_total[5m]) + xindao_commit_wait_seconds_bucket");
    assert!(names.contains("xindao_nope"));
    assert!(names.contains("xindao_commit_wait_seconds"));
}
