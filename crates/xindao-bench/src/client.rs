//! Users (development login) and WebSocket connections from many loopback source addresses.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::proto::{self, Frame, Target};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub token: String,
}

#[derive(Deserialize)]
struct LoginReply {
    token: String,
    user: LoginUser,
}
#[derive(Deserialize)]
struct LoginUser {
    id: u64,
}

/// Create (or log in) `n` users named `{prefix}{i}` with `POST /v1/login/dev`, `concurrency` at a time.
pub async fn login_pool(
    base: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<Vec<User>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    // Any node of a cluster serves logins (they share the store): use the first.
    let url = format!("{}/v1/login/dev", base.split(',').next().unwrap_or(base));
    let results: Vec<Result<(usize, User)>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            let url = url.clone();
            let name = format!("{prefix}{i}");
            async move {
                let mut last = anyhow!("no attempt");
                for attempt in 0..5u64 {
                    match http
                        .post(&url)
                        .json(&serde_json::json!({ "display_name": name }))
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            let r: LoginReply = r.json().await?;
                            return Ok((
                                i,
                                User {
                                    id: r.user.id,
                                    token: r.token,
                                },
                            ));
                        }
                        Ok(r) => last = anyhow!("login {name}: HTTP {}", r.status()),
                        Err(e) => last = anyhow!("login {name}: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
                }
                Err(last)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut users = vec![None; n];
    for r in results {
        let (i, u) = r?;
        users[i] = Some(u);
    }
    Ok(users.into_iter().map(|u| u.expect("every user")).collect())
}

static NEXT_SRC: AtomicUsize = AtomicUsize::new(0);

/// Number of loopback source addresses used (127.0.0.2 ..= 127.0.0.251).
pub const SRC_ADDRS: usize = 250;

/// Start the source address rotation at `offset` (worker processes use different offsets).
pub fn set_src_offset(offset: usize) {
    NEXT_SRC.store(offset, Ordering::Relaxed);
}

fn next_src() -> Ipv4Addr {
    let i = NEXT_SRC.fetch_add(1, Ordering::Relaxed) % SRC_ADDRS;
    Ipv4Addr::new(127, 0, 0, 2 + i as u8)
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 << 20)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20))
}

pub type Ws = WebSocketStream<TcpStream>;

/// One authenticated connection.
pub struct Conn {
    pub ws: Ws,
    pub target: Target,
    next_id: u64,
}

/// Open a TCP connection from the next loopback source address to `addr`. Sockets close with RST (zero linger),
/// so neither side accumulates TIME_WAIT across runs.
pub async fn tcp_connect(addr: SocketAddr) -> Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::V4(SocketAddrV4::new(next_src(), 0)))?;
    sock.set_nodelay(true)?;
    sock.set_zero_linger()?;
    Ok(sock.connect(addr).await?)
}

pub fn server_addr(base: &str) -> Result<SocketAddr> {
    let hostport = base
        .trim_start_matches("http://")
        .trim_start_matches("mqtt://")
        .split('/')
        .next()
        .unwrap_or_default();
    let addr: SocketAddr = hostport.parse().with_context(|| {
        format!("server address {hostport:?} (use an IP, e.g. http://127.0.0.1:8080)")
    })?;
    if !addr.ip().is_loopback() {
        bail!("refusing to send load to a non-loopback address {addr}");
    }
    Ok(addr)
}

impl Conn {
    /// Connect, upgrade and authenticate; returns once the server has greeted the connection (xindao `hello`,
    /// Socket.IO namespace `40`).
    pub async fn connect(
        target: Target,
        base: &str,
        addr: SocketAddr,
        token: &str,
    ) -> Result<Conn> {
        let tcp = tcp_connect(addr).await?;
        let url = target.ws_url(base, token);
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
            .await
            .context("websocket upgrade")?;
        let mut c = Conn {
            ws,
            target,
            next_id: 1,
        };
        match target {
            Target::Xindao => loop {
                let text = c.recv_text().await?;
                if let Frame::Push { event: "hello", .. } = proto::parse(target, &text)? {
                    break;
                }
            },
            Target::Socketio | Target::SocketioSqlite => {
                loop {
                    let text = c.recv_text().await?;
                    if let Frame::EioOpen = proto::parse(target, &text)? {
                        break;
                    }
                }
                c.send_text(format!(r#"40{{"token":"{token}"}}"#)).await?;
                loop {
                    let text = c.recv_text().await?;
                    match proto::parse(target, &text)? {
                        Frame::SioConnect => break,
                        Frame::SioConnectError(e) => bail!("socket.io connect refused: {e}"),
                        Frame::EioPing => c.send_text("3".into()).await?,
                        _ => {}
                    }
                }
            }
            Target::Mosquitto => bail!(proto::MQTT_ONLY),
        }
        Ok(c)
    }

    pub async fn send_text(&mut self, text: String) -> Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// Next text (or binary) frame.
    pub async fn recv_text(&mut self) -> Result<String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Binary(b))) => return Ok(String::from_utf8(b.to_vec())?),
                Some(Ok(Message::Close(f))) => bail!("closed by server: {f:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("connection ended"),
            }
        }
    }

    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Send a request and wait for its reply, ignoring pushes meanwhile. Returns the result body.
    pub async fn call(&mut self, op: &str, args: &str) -> Result<Box<RawValue>> {
        let id = self.alloc_id();
        self.send_text(self.target.request(id, op, args)).await?;
        self.wait_reply(id, op).await
    }

    pub async fn wait_reply(&mut self, id: u64, op: &str) -> Result<Box<RawValue>> {
        loop {
            let text = self.recv_text().await?;
            match proto::parse(self.target, &text)? {
                Frame::Reply { id: rid, ok, body } if rid == id => {
                    let body = body.map(|b| b.to_owned()).unwrap_or_else(|| {
                        RawValue::from_string("null".into()).expect("valid JSON")
                    });
                    if ok {
                        return Ok(body);
                    }
                    bail!("{op} failed: {}", body.get());
                }
                Frame::EioPing => self.send_text("3".into()).await?,
                _ => {}
            }
        }
    }

    /// Send `ops` requests pipelined (at most `window` unanswered), failing on the first error reply.
    pub async fn call_many(&mut self, op: &str, args: &[String], window: usize) -> Result<()> {
        let first = self.next_id;
        let mut sent = 0usize;
        let mut done = 0usize;
        while done < args.len() {
            while sent < args.len() && sent - done < window {
                let id = self.alloc_id();
                self.send_text(self.target.request(id, op, &args[sent]))
                    .await?;
                sent += 1;
            }
            let text = self.recv_text().await?;
            match proto::parse(self.target, &text)? {
                Frame::Reply { id, ok, body } if id >= first && id < first + sent as u64 => {
                    if !ok {
                        bail!("{op} failed: {}", body.map(|b| b.get()).unwrap_or(""));
                    }
                    done += 1;
                }
                Frame::EioPing => self.send_text("3".into()).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Connect one connection per token, `concurrency` at a time, preserving order.
pub async fn connect_all(
    target: Target,
    base: &str,
    tokens: &[&str],
    concurrency: usize,
) -> Result<Vec<Conn>> {
    // `base` may list several nodes of one cluster (comma-separated): connection i goes to node i % n, so
    // the two users of a pair, or the members of a room, sit on different nodes.
    let nodes: Vec<(&str, SocketAddr)> = base
        .split(',')
        .map(|url| Ok((url, server_addr(url)?)))
        .collect::<Result<_>>()?;
    let nodes = &nodes;
    let results: Vec<(usize, Result<Conn>)> = futures_util::stream::iter(tokens.iter().enumerate())
        .map(|(i, t)| async move {
            let (base, addr) = nodes[i % nodes.len()];
            let mut last = None;
            for attempt in 0..5u64 {
                match Conn::connect(target, base, addr, t).await {
                    Ok(c) => return (i, Ok(c)),
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
            (i, Err(last.expect("an attempt")))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut conns: Vec<Option<Conn>> = (0..tokens.len()).map(|_| None).collect();
    for (i, r) in results {
        conns[i] = Some(r.with_context(|| format!("connection {i}"))?);
    }
    Ok(conns
        .into_iter()
        .map(|c| c.expect("every connection"))
        .collect())
}

/// Raise this process' open-file soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        }
    }
    rl.rlim_cur
}

/// Pin the calling thread (and the processes it spawns afterwards) to `cpus` (e.g. "1" or "1,2").
pub fn pin_to(cpus: &str) -> Result<()> {
    if cpus.trim().is_empty() {
        return Ok(()); // unpinned: the scheduler places the thread
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus.split(',').filter(|s| !s.is_empty()) {
            libc::CPU_SET(c.trim().parse::<usize>()?, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({cpus}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
