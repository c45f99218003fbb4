//! A burst of logins waits for the store as tasks, not as one parked thread each.
//!
//! The test counts its process's threads, which other tests running beside it would disturb: so it runs its
//! body in a process of its own, this test binary started again and filtered to this one test.

use crate::common;
use crate::services;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn threads_now() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Set in the process that runs the burst alone.
const ALONE: &str = "XINDAO_TEST_LOGIN_BURST_ALONE";

#[test]
fn a_login_burst_does_not_start_a_thread_per_login() {
    if !std::path::Path::new("/proc/self/status").exists() {
        services::skipped("no /proc to count threads on this system");
        return;
    }
    if std::env::var_os(ALONE).is_some() {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(login_burst());
    }
    let module = module_path!().split_once("::").map_or("", |(_, path)| path);
    let name = format!("{module}::a_login_burst_does_not_start_a_thread_per_login");
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .expect("run this test binary again");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the burst in its own process failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the burst ran in its own process:\n{stdout}"
    );
}

async fn login_burst() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    // Warm up (first SQLite statements, reqwest's pool), then take the baseline.
    login(addr, "warmup").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = threads_now();

    let most = Arc::new(AtomicUsize::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (most, done) = (most.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(threads_now(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    const LOGINS: usize = 300;
    let logins =
        (0..LOGINS).map(|i| tokio::spawn(async move { login(addr, &format!("burst{i}")).await }));
    let logins = futures_util::future::join_all(logins).await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    let ids: std::collections::HashSet<i64> =
        logins.into_iter().map(|l| l.unwrap().user_id).collect();
    assert_eq!(ids.len(), LOGINS, "every login made its own user");
    let added = most.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!("{added} threads started for {LOGINS} concurrent logins (baseline {baseline})");
    // The store has one writer and four readers; a handful of blocking threads serve them. Before, every
    // waiting call held a thread of its own (hundreds in a burst).
    assert!(
        added < 40,
        "{added} threads started for {LOGINS} concurrent logins"
    );
}
