//! Measurement helpers: /proc sampling, latency histograms, small statistics.

use std::sync::OnceLock;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the generator's clock base (first call). All timestamps in payloads use this clock; the
/// scenarios that measure latency run in one process, so it is shared by sender and receiver.
pub fn now_us() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// The instant that corresponds to `us` on the `now_us` clock.
pub fn instant_at(us: u64) -> Instant {
    *BASE.get_or_init(Instant::now) + std::time::Duration::from_micros(us)
}

/// A snapshot of one process' resource usage.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcSample {
    pub rss_kib: u64,
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    /// Time the process' threads spent runnable but waiting for a CPU (sum over threads of the second field of
    /// /proc/PID/task/TID/schedstat), in seconds: how much a shared machine delayed it. Threads that exited
    /// between two samples drop out of the sum, so a delta is only meaningful for a process whose threads live
    /// throughout (the generator's single thread; not a server with a blocking-thread pool).
    pub runq_wait_s: f64,
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime (clock ticks) from the text of /proc/PID/stat.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in KiB from the text of /proc/PID/status.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sample a process ("self" for this one).
pub fn sample(pid: &str) -> ProcSample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut wait_ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            wait_ns += text
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ProcSample {
        rss_kib: parse_status_rss(&status).unwrap_or(0),
        cpu_s: parse_stat_ticks(&stat).unwrap_or(0) as f64 / clk_tck(),
        runq_wait_s: wait_ns as f64 / 1e9,
    }
}

/// "some avg10" of /proc/pressure/cpu: share of time in the last 10 s some task waited for a CPU.
pub fn cpu_pressure() -> f64 {
    std::fs::read_to_string("/proc/pressure/cpu")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|f| f.strip_prefix("avg10="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Sample several processes (the nodes of a cluster) and add up their figures; all zero for none. Descendants'
/// CPU is not included: a server is one process.
pub fn sample_sum(pids: &[u32]) -> ProcSample {
    sum(pids.iter().map(|p| sample(&p.to_string())))
}

/// The sum of samples (RSS, CPU and run-queue wait added up).
pub fn sum(samples: impl IntoIterator<Item = ProcSample>) -> ProcSample {
    samples
        .into_iter()
        .fold(ProcSample::default(), |a, s| ProcSample {
            rss_kib: a.rss_kib + s.rss_kib,
            cpu_s: a.cpu_s + s.cpu_s,
            runq_wait_s: a.runq_wait_s + s.runq_wait_s,
        })
}

/// A counter of the TcpExt section of /proc/net/netstat (e.g. "ListenOverflows": SYNs dropped because a listen
/// queue was full).
pub fn tcp_ext(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    parse_tcp_ext(&text, name).unwrap_or(0)
}

pub fn parse_tcp_ext(text: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Latency histogram in microseconds (1 µs .. 10 min, 3 significant digits).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LatSummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub fn summarize_hist(h: &Histogram<u64>) -> LatSummary {
    if h.is_empty() {
        return LatSummary::default();
    }
    let ms = |v: u64| v as f64 / 1000.0;
    LatSummary {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

/// Least-squares slope of y over x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        None
    } else {
        Some(sxy / sxx)
    }
}

/// Nearest-rank percentile (q in 0..=1) of unsorted values.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parsing() {
        let stat =
            "1234 (xin dao) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 555 1000 300";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        let status = "Name:\txindao\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t8\n";
        assert_eq!(parse_status_rss(status), Some(5120));
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 3 17 17\n\
                       IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_tcp_ext(netstat, "ListenOverflows"), Some(17));
        assert_eq!(parse_tcp_ext(netstat, "Nope"), None);
    }

    #[test]
    fn samples_add_up() {
        let a = ProcSample {
            rss_kib: 100,
            cpu_s: 1.5,
            runq_wait_s: 0.25,
        };
        let b = ProcSample {
            rss_kib: 20,
            cpu_s: 0.5,
            runq_wait_s: 0.5,
        };
        let s = sum([a, b]);
        assert_eq!(s.rss_kib, 120);
        assert!((s.cpu_s - 2.0).abs() < 1e-12 && (s.runq_wait_s - 0.75).abs() < 1e-12);
        assert_eq!(sum([]).rss_kib, 0);
        assert_eq!(sample_sum(&[]).rss_kib, 0);
    }

    #[test]
    fn slope_and_percentiles() {
        let pts = [(0.0, 100.0), (1000.0, 108.0), (2000.0, 116.0)];
        assert!((slope(&pts).unwrap() - 0.008).abs() < 1e-12);
        assert_eq!(slope(&pts[..1]), None);
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        assert_eq!(percentile(&v, 1.0), Some(5.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn histogram_summary() {
        let mut h = new_hist();
        for us in 1..=1000u64 {
            record(&mut h, us * 10);
        }
        let s = summarize_hist(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 9.9).abs() < 0.01, "{s:?}");
    }
}
