//! The server's own split of a request's time, reported back to the client so that it can subtract it from
//! what it measured and see what the network and the proxies took (docs/protocol.md, "Server timing").
//!
//! The store does not know which request it serves, so what a request spent waiting on the store is gathered
//! in a task-local [`Spent`]: the connection task (or the HTTP middleware) runs the handler inside
//! [`scope`], and the store's helpers add to it ([`add_commit`], [`add_db`]); outside a scope they do nothing.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;

/// What one request spent waiting on the store.
#[derive(Debug, Default)]
pub struct Spent {
    commit_ns: AtomicU64,
    commits: AtomicU64,
    db_ns: AtomicU64,
}

impl Spent {
    pub fn new() -> Arc<Spent> {
        Arc::default()
    }

    /// Waiting for the store's commit (group commit), if the request committed anything.
    pub fn commit(&self) -> Option<Duration> {
        (self.commits.load(Ordering::Relaxed) > 0)
            .then(|| Duration::from_nanos(self.commit_ns.load(Ordering::Relaxed)))
    }

    /// Other store calls: reads, writes outside group commit, waiting for a pooled connection.
    pub fn db(&self) -> Duration {
        Duration::from_nanos(self.db_ns.load(Ordering::Relaxed))
    }
}

tokio::task_local! {
    static SPENT: Arc<Spent>;
}

/// Runs `future` with `spent` gathering its store time.
pub fn scope<F: Future>(spent: Arc<Spent>, future: F) -> impl Future<Output = F::Output> {
    SPENT.scope(spent, future)
}

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// Adds a commit wait to the current request's [`Spent`], if there is one.
pub fn add_commit(elapsed: Duration) {
    let _ = SPENT.try_with(|spent| {
        spent.commit_ns.fetch_add(nanos(elapsed), Ordering::Relaxed);
        spent.commits.fetch_add(1, Ordering::Relaxed);
    });
}

/// Adds a store call's time to the current request's [`Spent`], if there is one.
pub fn add_db(elapsed: Duration) {
    let _ = SPENT.try_with(|spent| {
        spent.db_ns.fetch_add(nanos(elapsed), Ordering::Relaxed);
    });
}

/// Measures a store call from its creation to its drop ([`add_db`]).
pub struct DbTimer(Instant);

impl DbTimer {
    pub fn start() -> DbTimer {
        DbTimer(Instant::now())
    }
}

impl Drop for DbTimer {
    fn drop(&mut self) {
        add_db(self.0.elapsed());
    }
}

/// A WebSocket reply's `timing` field. `queued_us + handle_us` is the server's whole time for the request
/// (frame read to reply encoded); `commit_us` and `db_us` are parts of `handle_us`.
#[derive(Debug, Serialize)]
pub struct ReplyTiming<'a> {
    pub queued_us: u64,
    pub handle_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_us: Option<u64>,
    pub node: &'a str,
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

impl<'a> ReplyTiming<'a> {
    /// The split of a request read at `read_at`, handled from `started` until now.
    pub fn new(read_at: Instant, started: Instant, spent: &Spent, node: &'a str) -> Self {
        let handle = started.elapsed();
        // Parts of the handling: clamped, as concurrent store calls of one request could add up past it.
        let db = spent.db().min(handle);
        ReplyTiming {
            queued_us: micros(started.saturating_duration_since(read_at)),
            handle_us: micros(handle),
            commit_us: spent.commit().map(|commit| micros(commit.min(handle))),
            db_us: (!db.is_zero()).then(|| micros(db)),
            node,
        }
    }

    /// `reply` (a JSON object we encoded) with this as its `timing` field.
    pub fn attach(&self, reply: Utf8Bytes) -> Utf8Bytes {
        let Ok(timing) = serde_json::to_string(self) else {
            return reply;
        };
        let Some(body) = reply.as_str().strip_suffix('}') else {
            return reply;
        };
        let mut out = String::with_capacity(reply.len() + timing.len() + 12);
        out.push_str(body);
        out.push_str(",\"timing\":");
        out.push_str(&timing);
        out.push('}');
        out.into()
    }
}

/// An HTTP answer's `Server-Timing` value: `handle` (the whole request in the server), `db` and `commit`
/// (parts of it), and the node as a description.
pub fn server_timing(handle: Duration, spent: &Spent, node: &str) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut value = format!("handle;dur={:.3}", ms(handle));
    let db = spent.db().min(handle);
    value.push_str(&format!(", db;dur={:.3}", ms(db)));
    if let Some(commit) = spent.commit() {
        value.push_str(&format!(", commit;dur={:.3}", ms(commit.min(handle))));
    }
    // A description is a quoted string: keep the node name to token characters.
    let node: String = node
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
        .take(64)
        .collect();
    value.push_str(&format!(", node;desc=\"{node}\""));
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_spliced_into_the_reply() {
        let spent = Spent::new();
        let now = Instant::now();
        let timing = ReplyTiming::new(now, now, &spent, "n1");
        let reply = timing.attach(r#"{"id":1,"ok":true,"result":{}}"#.into());
        let value: serde_json::Value = serde_json::from_str(reply.as_str()).unwrap();
        assert_eq!(value["timing"]["node"], "n1");
        assert!(value["timing"].get("commit_us").is_none());
        assert_eq!(value["result"], serde_json::json!({}));
    }

    #[tokio::test]
    async fn store_time_is_gathered_only_inside_a_scope() {
        add_commit(Duration::from_millis(5));
        let spent = Spent::new();
        scope(spent.clone(), async {
            add_commit(Duration::from_millis(2));
            add_db(Duration::from_millis(3));
        })
        .await;
        assert_eq!(spent.commit(), Some(Duration::from_millis(2)));
        assert_eq!(spent.db(), Duration::from_millis(3));
        let header = server_timing(Duration::from_millis(1), &spent, "a b\"c");
        assert_eq!(
            header,
            "handle;dur=1.000, db;dur=1.000, commit;dur=1.000, node;desc=\"abc\""
        );
    }
}
