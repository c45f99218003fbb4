//! The probe's report as text for a person: each step's figures, the rounds, the hops and the verdict. Kept
//! apart from `report.rs`, which gathers the figures and sums the hops (and is what `--json` prints).

use std::fmt::Write;

use super::net::Connected;
use super::Report;

impl Report {
    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "xindao probe {}{}",
            self.url,
            self.proxy
                .as_ref()
                .map(|p| format!(" via proxy {p}"))
                .unwrap_or_default()
        );
        if let Some(c) = &self.login_connect {
            connect_lines(&mut out, "login", c);
        }
        if let Some(l) = &self.login {
            let _ = writeln!(
                out,
                "  POST /v1/login/dev -> {}: first byte {:.1} ms, server {} ({} ms outside xindao) [request id {}]",
                l.status,
                l.first_byte_ms,
                server_ms(l.server.handle_ms, l.server.db_ms),
                l.server.handle_ms.map_or("?".into(), |s| format!("{:.1}", l.first_byte_ms - s)),
                self.login_request_id.as_deref().unwrap_or("-"),
            );
            headers_line(&mut out, &l.headers);
        }
        if let Some(c) = &self.ws_connect {
            connect_lines(&mut out, "websocket", c);
        }
        if let Some(u) = &self.upgrade {
            let _ = writeln!(
                out,
                "  GET /v1/ws -> {} in {:.1} ms, server {} [request id {}]; hello {:.1} ms later (connection {})",
                u.status,
                u.to_101_ms,
                server_ms(u.server.handle_ms, u.server.db_ms),
                self.upgrade_request_id.as_deref().unwrap_or("-"),
                u.hello_ms,
                u.connection_id.map_or("?".into(), |c| c.to_string()),
            );
            headers_line(&mut out, &u.headers);
        }
        if let Some((status, headers)) = &self.upgrade_refused {
            let _ = writeln!(out, "  GET /v1/ws -> {status} (not upgraded)");
            headers_line(&mut out, headers);
        }
        for (name, rounds) in [("ping", &self.ping), ("send", &self.send)] {
            if rounds.client_ms.n == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "{name} x{}: client median {:.2} ms (min {:.2}, max {:.2}); server median {:.2} ms{}; outside xindao median {:.2} ms",
                rounds.client_ms.n,
                rounds.client_ms.median,
                rounds.client_ms.min,
                rounds.client_ms.max,
                rounds.server_ms.median,
                rounds.commit_ms.as_ref().map(|c| format!(" (commit {:.2})", c.median)).unwrap_or_default(),
                rounds.outside_ms.median,
            );
        }
        if let Some(node) = &self.node {
            let _ = writeln!(out, "node: {node}");
        }
        let hops: Vec<String> = self
            .hops
            .iter()
            .map(|h| format!("{} {:.1}", h.name, h.ms))
            .collect();
        let _ = writeln!(out, "hops (ms, whole probe): {}", hops.join(" | "));
        if let Some(error) = &self.error {
            let _ = writeln!(out, "error: {error}");
        }
        let _ = writeln!(out, "{}", self.verdict);
        out
    }
}

fn server_ms(handle: Option<f64>, db: Option<f64>) -> String {
    match (handle, db) {
        (Some(handle), Some(db)) => format!("{handle:.1} ms (db {db:.1})"),
        (Some(handle), None) => format!("{handle:.1} ms"),
        _ => "? (no Server-Timing: stripped by a proxy, or not xindao)".into(),
    }
}

fn connect_lines(out: &mut String, label: &str, c: &Connected) {
    let _ = write!(
        out,
        "{label}: dns {:.1} ms ({} -> {}) | tcp {:.1} ms",
        c.dns_ms,
        c.resolved,
        c.addresses.join(", "),
        c.tcp_ms
    );
    if let Some(proxy) = c.proxy_connect_ms {
        let _ = write!(out, " | proxy CONNECT {proxy:.1} ms");
    }
    if let Some(tls) = c.tls_ms {
        let _ = write!(out, " | tls {tls:.1} ms");
    }
    let _ = writeln!(out);
    if let Some(tls) = &c.tls {
        let _ = writeln!(
            out,
            "  tls {} alpn {}",
            tls.version,
            tls.alpn.as_deref().unwrap_or("-")
        );
        for cert in &tls.chain {
            let _ = writeln!(
                out,
                "  cert {} (names: {}) issuer {}; expires {} ({} days)",
                cert.subject,
                if cert.names.is_empty() {
                    "-".into()
                } else {
                    cert.names.join(", ")
                },
                cert.issuer,
                cert.not_after,
                cert.expires_in_days
            );
        }
    }
}

fn headers_line(out: &mut String, headers: &[(String, String)]) {
    let shown: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name != "server-timing" && name != "x-request-id")
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(out, "  proxy-revealing headers: {}", shown.join("; "));
    }
}
