//! Starting the server under test (the real `xindao serve` release binary, the Socket.IO peer or Mosquitto)
//! pinned to its own core, or attaching to one that is already running.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::proto::Target;
use crate::stats::{self, ProcSample};

#[derive(Clone, Debug, clap::Args)]
pub struct ServerOpts {
    /// Connect to a running server at this http://127.x.x.x:PORT URL instead of starting one. For the fanout
    /// and direct scenarios this may be a comma-separated list of the nodes of one cluster: connections are
    /// spread over them round-robin (logins go to the first).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// PID of the server given with --url (for RSS and CPU figures); for a node list, a comma-separated list
    /// of their PIDs in the same order (RSS and CPU figures are then sums over all of them).
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// The xindao binary (a release build).
    #[arg(long, global = true, default_value = "target/release/xindao")]
    pub xindao_bin: PathBuf,
    /// Directory of the Socket.IO peer (npm ci already run).
    #[arg(long, global = true, default_value = "bench/peers/socketio")]
    pub peer_dir: PathBuf,
    /// The Mosquitto broker binary (target `mosquitto`, fan-out only).
    #[arg(long, global = true, default_value = "/usr/sbin/mosquitto")]
    pub mosquitto_bin: PathBuf,
    /// Core the server is pinned to (taskset -c); empty for no pinning.
    #[arg(long, global = true, default_value = "0")]
    pub server_cpu: String,
    /// Extra argument for `xindao serve` (repeatable), e.g. --xindao-arg=--outbound-queue=1024.
    #[arg(long = "xindao-arg", global = true, allow_hyphen_values = true)]
    pub xindao_args: Vec<String>,
    /// Per-connection request rate given to xindao (--rate-per-sec and --rate-burst): the default (20/s) is for
    /// people, not for a load generator.
    #[arg(long, global = true, default_value_t = 1_000_000)]
    pub xindao_rate: u64,
}

pub struct Server {
    child: Option<Child>,
    pub target: Target,
    /// http://127.0.0.1:PORT
    pub url: String,
    /// The admin listener (/metrics) of a xindao server started here: http://127.0.0.1:PORT.
    pub admin_url: Option<String>,
    pub pid: Option<u32>,
    /// Every server process measured: the one started, or all given with --server-pid (one per node).
    pub pids: Vec<u32>,
    data_dir: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
}

impl Server {
    pub async fn start(
        opts: &ServerOpts,
        target: Target,
        log_path: &std::path::Path,
    ) -> Result<Server> {
        if let Some(url) = &opts.url {
            let command = format!("(external server at {url})");
            let url = url
                .split(',')
                .map(|u| u.trim().trim_end_matches('/'))
                .collect::<Vec<_>>()
                .join(",");
            let nodes = url.split(',').count();
            if !opts.server_pid.is_empty() && opts.server_pid.len() != nodes {
                bail!(
                    "--server-pid lists {} pids for {nodes} nodes in --url (give one per node, same order)",
                    opts.server_pid.len()
                );
            }
            return Ok(Server {
                child: None,
                target,
                url,
                // A running server's /metrics is on its admin listener, which --url does not name.
                admin_url: None,
                pid: opts.server_pid.first().copied(),
                pids: opts.server_pid.clone(),
                data_dir: None,
                command,
            });
        }
        let mut argv: Vec<String> = Vec::new();
        if !opts.server_cpu.is_empty() {
            argv.extend(["taskset".into(), "-c".into(), opts.server_cpu.clone()]);
        }
        let mut data_dir = None;
        let mut mqtt_port = None;
        match target {
            Target::Xindao => {
                let dir = bench_data_dir()?;
                let bin = std::fs::canonicalize(&opts.xindao_bin)
                    .with_context(|| format!("xindao binary {}", opts.xindao_bin.display()))?;
                let rate = opts.xindao_rate.to_string();
                argv.extend([
                    bin.display().to_string(),
                    "serve".into(),
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--data-dir".into(),
                    dir.display().to_string(),
                    "--dev-login".into(),
                    "true".into(),
                    // The bench logs in thousands of users from one address.
                    "--login-per-ip-per-minute".into(),
                    "1000000".into(),
                    "--login-per-second".into(),
                    "1000000".into(),
                    "--max-connections".into(),
                    "19900".into(),
                    "--max-connections-per-user".into(),
                    "100".into(),
                    // Every load-generator connection comes from 127.0.0.1.
                    "--max-connections-per-ip".into(),
                    "1000000".into(),
                    // One owner adds thousands of members, and every pair opens a direct conversation:
                    // the per-user limits are for people, not for a load generator's setup.
                    "--room-adds-per-min".into(),
                    "1000000".into(),
                    "--lookups-per-min".into(),
                    "1000000".into(),
                    // The admin listener (/metrics, for join-storm) on a free port: two servers on one
                    // machine would both want the default 127.0.0.1:9090.
                    "--admin-listen".into(),
                    "127.0.0.1:0".into(),
                    "--rate-per-sec".into(),
                    rate.clone(),
                    "--rate-burst".into(),
                    rate,
                    "--log".into(),
                    "warn".into(),
                ]);
                argv.extend(opts.xindao_args.iter().cloned());
                data_dir = Some(dir);
            }
            Target::Socketio | Target::SocketioSqlite => {
                let script = std::fs::canonicalize(opts.peer_dir.join("server.js"))
                    .with_context(|| format!("peer server in {}", opts.peer_dir.display()))?;
                argv.extend([
                    "node".into(),
                    script.display().to_string(),
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                ]);
                if target == Target::SocketioSqlite {
                    let dir = bench_data_dir()?;
                    argv.extend(["--sqlite".into(), dir.join("peer.db").display().to_string()]);
                    data_dir = Some(dir);
                }
            }
            Target::Mosquitto => {
                let dir = bench_data_dir()?;
                let port = free_port()?;
                let config = dir.join("mosquitto.conf");
                std::fs::write(&config, mosquitto_config(port))?;
                argv.extend([
                    opts.mosquitto_bin.display().to_string(),
                    "-c".into(),
                    config.display().to_string(),
                ]);
                data_dir = Some(dir);
                mqtt_port = Some(port);
            }
        }
        let command = argv.join(" ");
        let log = std::fs::File::create(log_path)?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {command}"))?;
        let pid = child.id();
        if let Some(port) = mqtt_port {
            let server = Server {
                child: Some(child),
                target,
                url: format!("mqtt://127.0.0.1:{port}"),
                admin_url: None,
                pid,
                pids: pid.into_iter().collect(),
                data_dir,
                command,
            };
            server.wait_accepting(log_path).await?;
            return Ok(server);
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .with_context(|| format!("{command}: no `listening` line within 60 s"))??;
        let Some(line) = line else {
            bail!(
                "{command} exited before listening; see {}",
                log_path.display()
            );
        };
        let Some(url) = line.trim().strip_prefix("listening ") else {
            bail!("{command}: unexpected first stdout line {line:?}");
        };
        // xindao prints its admin address next (when it has one).
        let mut admin_url = None;
        if target == Target::Xindao {
            if let Ok(Ok(Some(next))) =
                tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await
            {
                admin_url = next.trim().strip_prefix("admin ").map(str::to_string);
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let server = Server {
            child: Some(child),
            target,
            url: url.to_string(),
            admin_url,
            pid,
            pids: pid.into_iter().collect(),
            data_dir,
            command,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&self) -> Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{}/healthz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} never answered /healthz", self.url)
    }

    /// For a server that prints no `listening` line (Mosquitto): waits until its port accepts a connection.
    async fn wait_accepting(&self, log_path: &std::path::Path) -> Result<()> {
        let addr = crate::client::server_addr(&self.url)?;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{} never accepted a connection; see {}",
            self.url,
            log_path.display()
        )
    }

    /// RSS, CPU and run-queue wait summed over all server processes (one per node of a cluster).
    pub fn sample(&self) -> ProcSample {
        stats::sample_sum(&self.pids)
    }

    /// One sample per server process, in --server-pid order.
    pub fn sample_each(&self) -> Vec<ProcSample> {
        self.pids
            .iter()
            .map(|p| stats::sample(&p.to_string()))
            .collect()
    }

    /// The node URLs (one for a single server).
    pub fn nodes(&self) -> Vec<&str> {
        self.url.split(',').collect()
    }

    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SAFETY: plain kill(2) on our own child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A loopback port nothing listens on (Mosquitto cannot be told to pick one and report it).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Mosquitto on loopback for the fan-out scenario: anonymous clients, nothing persisted, no limit on
/// connections or on a client's queue (loss is counted, not caused by a cap), and TCP_NODELAY as xindao and
/// Node set it.
fn mosquitto_config(port: u16) -> String {
    format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n\
         max_queued_messages 0\nmax_queued_bytes 0\nset_tcp_nodelay true\nlog_dest stderr\n\
         log_type error\nlog_type warning\n"
    )
}

/// A fresh directory for one server's database, removed with the [`Server`].
fn bench_data_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "xindao-bench-{}-{}",
        std::process::id(),
        stats::now_us()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
