//! `xindao probe` against real set-ups: the server directly, through an HTTP proxy (CONNECT), through a
//! deliberately slow hop (a TCP relay written here that holds the first byte of every answer for 2 s: the
//! verdict must name it), and through a real nginx with TLS configured as docs/deploy.md says (skipped with a
//! visible line when nginx is not installed). Each prints the probe's report, as an operator would see it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xindao::probe::{self, ProbeArgs, Report};

use crate::common::TestServer;

fn args(url: String) -> ProbeArgs {
    ProbeArgs {
        url,
        token: None,
        name: "prober".into(),
        rounds: 3,
        proxy: None,
        ca_file: None,
        timeout: 30,
        json: false,
    }
}

fn hop(report: &Report, name: &str) -> f64 {
    report.hops.iter().find(|h| h.name == name).unwrap().ms
}

fn assert_complete(report: &Report) {
    assert!(report.ok(), "{}", report.text());
    let upgrade = report.upgrade.as_ref().unwrap();
    assert_eq!(upgrade.status, 101);
    assert_eq!(report.ping.client_ms.n, 3);
    assert_eq!(report.send.client_ms.n, 3);
    assert!(report.send.commit_ms.is_some(), "sends report their commit");
    assert_eq!(report.node.as_deref(), Some("probe-node"));
    // The server's part never exceeds what the client measured.
    assert!(report.ping.server_ms.max <= report.ping.client_ms.max);
    assert!(
        report.verdict.starts_with("verdict: "),
        "{}",
        report.verdict
    );
    let json: serde_json::Value = serde_json::to_value(report).unwrap();
    assert!(json["hops"].as_array().unwrap().len() >= 8);
}

async fn server() -> TestServer {
    TestServer::start(|config| config.node_id = Some("probe-node".into())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_against_the_server_directly() {
    let mut server = server().await;
    let report = probe::run(&args(format!("http://{}", server.addr))).await;
    println!("{}", report.text());
    assert_complete(&report);
    // Nothing slow in the way: the wait for answers is not seconds.
    assert!(hop(&report, "edge_wait") < 1000.0, "{}", report.text());

    // A refused upgrade: the probe says where it stopped and why, and exits 1 from the command line.
    let mut bad = args(format!("ws://{}", server.addr));
    bad.token = Some("not-a-token".into());
    let report = probe::run(&bad).await;
    assert_eq!(report.upgrade_refused.as_ref().map(|r| r.0), Some(401));
    assert!(
        report
            .verdict
            .contains("failed at upgrade: the token was refused"),
        "{}",
        report.verdict
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xindao"))
        .args([
            "probe",
            "--json",
            "-n",
            "1",
            &format!("ws://{}", server.addr),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["step"], "done");
    assert_eq!(json["upgrade"]["status"], 101);
    server.stop().await;
}

/// Relays every connection to `upstream`; the first byte of the answer is held `delay`.
async fn slow_relay(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut first = [0u8; 1];
                if server_read.read_exact(&mut first).await.is_err() {
                    return;
                }
                tokio::time::sleep(delay).await;
                if client_write.write_all(&first).await.is_ok() {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_names_a_hop_that_holds_the_first_byte() {
    let mut server = server().await;
    let relay = slow_relay(server.addr, Duration::from_secs(2)).await;
    let report = probe::run(&args(format!("http://{relay}"))).await;
    println!("{}", report.text());
    assert_complete(&report);
    // Login and upgrade each waited 2 s for their first byte, while the server reported milliseconds.
    assert!(hop(&report, "edge_wait") >= 3900.0, "{}", report.text());
    assert!(
        report
            .verdict
            .starts_with("verdict: edge_wait holds most of the time"),
        "{}",
        report.verdict
    );
    server.stop().await;
}

/// A minimal HTTP proxy: `CONNECT host:port`, then a blind tunnel; answers 403 to anything else.
async fn connect_proxy() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    match client.read_u8().await {
                        Ok(byte) => head.push(byte),
                        Err(_) => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let mut words = head.split_whitespace();
                let (Some("CONNECT"), Some(authority)) = (words.next(), words.next()) else {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(authority).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(
                        b"HTTP/1.1 200 Connection established\r\nVia: 1.1 test-proxy\r\n\r\n",
                    )
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_through_an_http_proxy() {
    let mut server = server().await;
    let proxy = connect_proxy().await;
    let mut through = args(format!("http://{}", server.addr));
    through.proxy = Some(format!("http://{proxy}"));
    let report = probe::run(&through).await;
    println!("{}", report.text());
    assert_complete(&report);
    let connect = report.ws_connect.as_ref().unwrap();
    assert!(connect.proxy_connect_ms.is_some());
    assert_eq!(connect.resolved, proxy.to_string());
    assert_eq!(report.proxy.as_deref(), Some(proxy.to_string().as_str()));
    // A proxy that refuses: the probe says where it stopped.
    let mut refused = args(format!("http://{}", server.addr));
    refused.proxy = Some(format!("http://{}", server.addr));
    let report = probe::run(&refused).await;
    assert!(!report.ok());
    assert!(
        report.error.as_deref().unwrap().contains("CONNECT"),
        "{:?}",
        report.error
    );
    assert!(
        report.verdict.contains("failed at login connect"),
        "{}",
        report.verdict
    );
    server.stop().await;
}

/// nginx, killed when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|path| Path::new(path).exists())
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a certificate it signed for `localhost` and 127.0.0.1: a real two-certificate chain.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=xindao test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "20",
            "-extfile",
            "leaf.ext",
        ],
    );
    let chain = [
        std::fs::read_to_string(dir.join("leaf.pem")).unwrap(),
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_through_nginx_with_tls_as_deployed() {
    let Some(nginx) = nginx_binary() else {
        eprintln!("SKIPPED: nginx not installed (apt-get install -y nginx-light)");
        return;
    };
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl not installed (needed for the test certificates)");
        return;
    }
    let mut server = server().await;
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let free_port = || {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let (port, broken) = (free_port(), free_port());
    let prefix = dir.path().display();
    // docs/deploy.md's server block, on a free port, with files under the test's directory.
    let config = format!(
        r#"daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate     {prefix}/chain.pem;
        ssl_certificate_key {prefix}/leaf.key;
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
        }}
    }}
    # The common mistake: no HTTP/1.1 and no Upgrade/Connection headers towards xindao.
    server {{
        listen 127.0.0.1:{broken} ssl;
        server_name localhost;
        ssl_certificate     {prefix}/chain.pem;
        ssl_certificate_key {prefix}/leaf.key;
        location / {{
            proxy_pass http://{upstream};
        }}
    }}
}}
"#,
        upstream = server.addr
    );
    std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
    let child = Command::new(nginx)
        .args([
            "-p",
            &prefix.to_string(),
            "-c",
            &format!("{prefix}/nginx.conf"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let _nginx = Nginx(child);
    let listening = async {
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), listening)
        .await
        .expect("nginx listens");

    let mut through = args(format!("wss://localhost:{port}"));
    through.ca_file = Some(dir.path().join("ca.pem"));
    let report = probe::run(&through).await;
    println!("{}", report.text());
    assert_complete(&report);
    let tls = report.ws_connect.as_ref().unwrap().tls.as_ref().unwrap();
    assert_eq!(tls.chain.len(), 2, "leaf and CA: {tls:?}");
    assert!(
        tls.chain[0].names.contains(&"localhost".to_string()),
        "{tls:?}"
    );
    assert!((18..=20).contains(&tls.chain[0].expires_in_days), "{tls:?}");
    let upgrade = report.upgrade.as_ref().unwrap();
    assert!(
        upgrade
            .headers
            .iter()
            .any(|(name, value)| name == "server" && value.starts_with("nginx")),
        "nginx shows itself: {:?}",
        upgrade.headers
    );
    // nginx without the upgrade headers: the probe stops at the upgrade and names the cause.
    let mut misconfigured = args(format!("wss://localhost:{broken}"));
    misconfigured.ca_file = Some(dir.path().join("ca.pem"));
    let report = probe::run(&misconfigured).await;
    println!("{}", report.text());
    assert!(!report.ok());
    assert!(
        report.verdict.contains("does not pass WebSocket upgrades"),
        "{}",
        report.text()
    );
    // Without the test CA, the chain is not trusted: the probe stops at TLS and says so.
    let report = probe::run(&args(format!("wss://localhost:{port}"))).await;
    assert!(!report.ok());
    assert!(
        report.error.as_deref().unwrap().starts_with("TLS"),
        "{:?}",
        report.error
    );
    server.stop().await;
}
