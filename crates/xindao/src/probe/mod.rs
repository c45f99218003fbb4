//! `xindao probe <url>`: connects to a deployment as a client would (HTTP login, then the WebSocket, through
//! whatever proxy or CDN is in the way) and says which hop holds the time: DNS, TCP, the proxy's CONNECT, TLS,
//! the wait for the first byte of an answer beyond what xindao reported spending (a proxy, a CDN, the
//! network), the server itself, the store's commit, or the WebSocket round trips' network share.
//!
//! Every reply the probe asks for carries the server's own timing (docs/protocol.md, "Server timing"), so
//! each client-measured time splits into the server's part and the rest. docs/troubleshooting.md reads it.

mod exchange;
mod net;
mod report;
mod text;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

pub use exchange::{HttpAnswer, Round, ServerTiming, Upgrade};
pub use net::{CertInfo, Connected, Proxy, Target, TlsInfo};
pub use report::{Hop, Report, Stats};

/// What can stop a probe; each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("bad url: {0}")]
    Url(String),
    #[error("DNS: {0}")]
    Dns(String),
    #[error("TCP connect: {0}")]
    Tcp(String),
    #[error("HTTP proxy: {0}")]
    Proxy(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("login: {0}")]
    Login(String),
    #[error("upgrade answered {status} instead of 101: {body}")]
    Upgrade {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    #[error("WebSocket: {0}")]
    Protocol(String),
    #[error("timed out after {0:?} (in {1})")]
    Timeout(Duration, &'static str),
}

/// `xindao probe`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// The deployment, as a client reaches it: `https://host`, `wss://host:port/base`, `http://...`, `ws://...`.
    pub url: String,
    /// A session token to use instead of the development login.
    #[arg(long, env = "XINDAO_PROBE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Display name for the development login (POST /v1/login/dev).
    #[arg(long, default_value = "xindao-probe")]
    pub name: String,
    /// Round trips of `ping`, and of `send` to the probe's own room.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub rounds: u32,
    /// HTTP proxy reached with CONNECT (default: HTTPS_PROXY, or HTTP_PROXY for a plain target; NO_PROXY).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Extra trusted CA certificates (PEM), besides the webpki and system roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Longest the whole probe may take, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// JSON output, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Runs the probe; a failure is reported in the [`Report`] (its `error`), with what was measured before it.
pub async fn run(args: &ProbeArgs) -> Report {
    let mut report = Report::new(&args.url);
    let limit = Duration::from_secs(args.timeout.max(1));
    let outcome = tokio::time::timeout(limit, probe(args, &mut report)).await;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(_) => Some(ProbeError::Timeout(limit, report.step)),
    };
    report.finish(error);
    report
}

async fn probe(args: &ProbeArgs, report: &mut Report) -> Result<(), ProbeError> {
    let target = Target::parse(&args.url)?;
    let proxy = Proxy::for_target(args.proxy.as_deref(), &target)?;
    report.proxy = proxy.as_ref().map(|p| format!("{}:{}", p.host, p.port));
    let tls = net::tls_config(args.ca_file.as_deref())?;
    let run_id = format!("{:08x}", rand::random::<u32>());

    let token = match &args.token {
        Some(token) => token.clone(),
        None => {
            report.step = "login connect";
            let (mut stream, connected) = net::connect(&target, proxy.as_ref(), &tls).await?;
            report.login_connect = Some(connected);
            report.step = "login";
            let body = json!({ "display_name": args.name }).to_string();
            let request_id = format!("probe-{run_id}-login");
            let answer = exchange::http_request(
                &mut stream,
                &target,
                "POST",
                "/v1/login/dev",
                &body,
                &request_id,
            )
            .await?;
            report.login_request_id = Some(request_id);
            let status = answer.status;
            let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
            report.login = Some(answer);
            if status != 200 {
                return Err(ProbeError::Login(format!(
                    "POST /v1/login/dev answered {status} (use --token where development login is off)"
                )));
            }
            parsed
                .as_ref()
                .and_then(|body| body["token"].as_str())
                .map(str::to_string)
                .ok_or_else(|| ProbeError::Login("the answer has no token".into()))?
        }
    };

    report.step = "websocket connect";
    let (stream, connected) = net::connect(&target, proxy.as_ref(), &tls).await?;
    report.ws_connect = Some(connected);
    report.step = "upgrade";
    let request_id = format!("probe-{run_id}-ws");
    let upgraded = exchange::upgrade(stream, &target, &token, &request_id).await;
    report.upgrade_request_id = Some(request_id);
    let (mut socket, upgrade) = match upgraded {
        Ok(upgraded) => upgraded,
        Err(ProbeError::Upgrade {
            status,
            headers,
            body,
        }) => {
            report.upgrade_refused = Some((status, headers.clone()));
            return Err(ProbeError::Upgrade {
                status,
                headers,
                body,
            });
        }
        Err(error) => return Err(error),
    };
    report.upgrade = Some(upgrade);

    report.step = "ping round trips";
    let mut id = 1;
    for _ in 0..args.rounds {
        let (round, _) = exchange::round(&mut socket, id, "ping", json!({})).await?;
        report.pings.push(round);
        id += 1;
    }
    if args.rounds > 0 {
        report.step = "send round trips";
        let room = exchange::probe_room(&mut socket, id).await?;
        id += 2;
        for i in 0..args.rounds {
            let args = json!({ "conversation_id": room, "cmid": format!("probe-{run_id}-{i}"), "content": "xindao probe" });
            let (round, _) = exchange::round(&mut socket, id, "send", args).await?;
            report.sends.push(round);
            id += 1;
        }
    }
    exchange::close(socket).await;
    report.step = "done";
    Ok(())
}
