//! The probe's findings: every step's figures, the time per hop summed over the run, and a verdict naming
//! the hop that holds most of it. Printed as text, or as JSON (`--json`) for scripts.

use serde::Serialize;

use super::exchange::{HttpAnswer, Round, Upgrade};
use super::net::Connected;
use super::ProbeError;

/// A hop and the time it held over the whole probe.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub name: &'static str,
    pub ms: f64,
    pub what: &'static str,
}

/// Minimum, median and maximum of a series, in ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Stats {
    fn of(values: impl Iterator<Item = f64>) -> Stats {
        let mut values: Vec<f64> = values.collect();
        values.sort_by(f64::total_cmp);
        match values.len() {
            0 => Stats::default(),
            n => Stats {
                n,
                min: values[0],
                median: values[n / 2],
                max: values[n - 1],
            },
        }
    }
}

/// Client-measured round trips split into the server's part and the rest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundSummary {
    pub client_ms: Stats,
    pub server_ms: Stats,
    /// Client minus server: the network, the proxies and the client.
    pub outside_ms: Stats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_ms: Option<Stats>,
}

impl RoundSummary {
    fn of(rounds: &[Round]) -> RoundSummary {
        let commits: Vec<f64> = rounds.iter().filter_map(|r| r.commit_ms).collect();
        RoundSummary {
            client_ms: Stats::of(rounds.iter().map(|r| r.client_ms)),
            server_ms: Stats::of(rounds.iter().map(|r| r.server_ms)),
            outside_ms: Stats::of(rounds.iter().map(|r| r.client_ms - r.server_ms)),
            commit_ms: (!commits.is_empty()).then(|| Stats::of(commits.into_iter())),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The step running last (the failed one, when there is an error).
    pub step: &'static str,
    pub login_connect: Option<Connected>,
    pub login_request_id: Option<String>,
    pub login: Option<HttpAnswer>,
    pub ws_connect: Option<Connected>,
    pub upgrade_request_id: Option<String>,
    pub upgrade: Option<Upgrade>,
    /// A refused upgrade's status and revealing headers.
    pub upgrade_refused: Option<(u16, Vec<(String, String)>)>,
    pub node: Option<String>,
    #[serde(skip)]
    pub pings: Vec<Round>,
    #[serde(skip)]
    pub sends: Vec<Round>,
    pub ping: RoundSummary,
    pub send: RoundSummary,
    pub hops: Vec<Hop>,
    pub total_ms: f64,
    pub verdict: String,
    pub error: Option<String>,
}

impl Report {
    pub fn new(url: &str) -> Report {
        Report {
            url: url.to_string(),
            proxy: None,
            step: "start",
            login_connect: None,
            login_request_id: None,
            login: None,
            ws_connect: None,
            upgrade_request_id: None,
            upgrade: None,
            upgrade_refused: None,
            node: None,
            pings: Vec::new(),
            sends: Vec::new(),
            ping: RoundSummary::default(),
            send: RoundSummary::default(),
            hops: Vec::new(),
            total_ms: 0.0,
            verdict: String::new(),
            error: None,
        }
    }

    /// Whether the probe got through every step.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Sums the hops and writes the verdict.
    pub fn finish(&mut self, error: Option<ProbeError>) {
        self.ping = RoundSummary::of(&self.pings);
        self.send = RoundSummary::of(&self.sends);
        self.node = self
            .pings
            .iter()
            .chain(&self.sends)
            .find_map(|r| r.node.clone())
            .or_else(|| self.upgrade.as_ref().and_then(|u| u.server.node.clone()))
            .or_else(|| self.login.as_ref().and_then(|l| l.server.node.clone()));
        self.hops = self.sum_hops();
        self.total_ms = round3(self.hops.iter().map(|h| h.ms).sum());
        self.verdict = match &error {
            Some(error) => self.failure_verdict(error),
            None => self.time_verdict(),
        };
        self.error = error.map(|e| e.to_string());
    }

    fn sum_hops(&self) -> Vec<Hop> {
        let connects = [&self.login_connect, &self.ws_connect];
        let connect_sum = |f: fn(&Connected) -> f64| {
            connects
                .iter()
                .filter_map(|c| c.as_ref())
                .map(f)
                .sum::<f64>()
        };
        // What an HTTP answer's first byte took beyond the server's own time.
        let login_server = self
            .login
            .as_ref()
            .and_then(|l| l.server.handle_ms)
            .unwrap_or(0.0);
        let upgrade_server = self
            .upgrade
            .as_ref()
            .and_then(|u| u.server.handle_ms)
            .unwrap_or(0.0);
        let login_wait = self
            .login
            .as_ref()
            .map_or(0.0, |l| (l.first_byte_ms - login_server).max(0.0));
        let upgrade_wait = self
            .upgrade
            .as_ref()
            .map_or(0.0, |u| (u.to_101_ms - upgrade_server).max(0.0));
        let rounds = self.pings.iter().chain(&self.sends);
        let commit: f64 = self.sends.iter().filter_map(|r| r.commit_ms).sum();
        let server_rounds: f64 = rounds.clone().map(|r| r.server_ms).sum::<f64>() - commit;
        let outside: f64 = rounds.map(|r| (r.client_ms - r.server_ms).max(0.0)).sum();
        let hops = [
            ("dns", connect_sum(|c| c.dns_ms), "resolving the host name"),
            ("tcp_connect", connect_sum(|c| c.tcp_ms), "the TCP handshake (one network round trip)"),
            (
                "proxy_connect",
                connect_sum(|c| c.proxy_connect_ms.unwrap_or(0.0)),
                "the HTTP proxy's CONNECT",
            ),
            (
                "tls_handshake",
                connect_sum(|c| c.tls_ms.unwrap_or(0.0)),
                "the TLS handshake (a terminating proxy or CDN, or the network)",
            ),
            (
                "edge_wait",
                login_wait + upgrade_wait,
                "waiting for an HTTP answer's first byte beyond xindao's own time: a proxy, CDN or load \
                 balancer in the way, or the network",
            ),
            (
                "server",
                login_server + upgrade_server + server_rounds.max(0.0),
                "inside xindao: queueing and handling (Server-Timing and reply timing)",
            ),
            ("commit", commit, "waiting for the store's commit (disk fsync or PostgreSQL)"),
            (
                "hello",
                self.upgrade.as_ref().map_or(0.0, |u| u.hello_ms),
                "the 101 to the hello frame: xindao registering the connection, and the way back",
            ),
            (
                "ws_network",
                outside,
                "WebSocket round trips beyond xindao's own time: the network, the proxies, the client",
            ),
        ];
        hops.into_iter()
            .map(|(name, ms, what)| Hop {
                name,
                ms: round3(ms),
                what,
            })
            .collect()
    }

    fn time_verdict(&self) -> String {
        let Some(top) = self.hops.iter().max_by(|a, b| a.ms.total_cmp(&b.ms)) else {
            return "verdict: nothing measured".into();
        };
        let share = if self.total_ms > 0.0 {
            top.ms / self.total_ms * 100.0
        } else {
            0.0
        };
        format!(
            "verdict: {} holds most of the time: {:.1} ms of {:.1} ms ({share:.0}%): {}",
            top.name, top.ms, self.total_ms, top.what
        )
    }

    fn failure_verdict(&self, error: &ProbeError) -> String {
        let hint = match error {
            ProbeError::Dns(_) => "the name does not resolve from here",
            ProbeError::Tcp(_) => "nothing accepts connections there (firewall, wrong port, server down)",
            ProbeError::Proxy(_) => "the HTTP proxy refused or failed the CONNECT",
            ProbeError::Tls(_) => "the certificate chain or the TLS setup (a CDN's certificate, an expired or incomplete chain)",
            ProbeError::Upgrade { status: 400 | 426, .. } => {
                "a proxy in the way does not pass WebSocket upgrades (Upgrade/Connection headers, HTTP/1.1)"
            }
            ProbeError::Upgrade { status: 401, .. } => "the token was refused",
            ProbeError::Upgrade { status: 502..=504, .. } => {
                "a proxy could not reach xindao (or timed out waiting for it)"
            }
            ProbeError::Upgrade { .. } => "the upgrade was refused",
            ProbeError::Timeout(..) => "a hop held the request past the probe's timeout",
            _ => "see the error",
        };
        format!("verdict: failed at {}: {hint}", self.step)
    }
}

/// Rounded to the microsecond; `+ 0.0` turns the `-0.0` of an empty sum into `0.0`.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0 + 0.0
}
