//! Test access to the real services of a cluster on 127.0.0.1: a fresh PostgreSQL database per test,
//! reachability checks for Redis and NATS (a test without them prints SKIPPED and returns), restarts of Redis
//! and NATS that always bring the service back, and in-process nodes that can be killed abruptly.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;
use xindao::{Config, Server};

pub const PG_ADDR: &str = "127.0.0.1:5432";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
/// The `cluster_secret` of test clusters.
pub const CLUSTER_SECRET: &str = "test-cluster-secret-of-32-bytes-at-least";

/// Says that a test is skipped, on the real stderr: the test harness captures `eprintln!` of passing
/// tests, and a skip must never look like a pass.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {why}");
}

async fn reachable(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Whether the bus at `url` answers; prints the SKIPPED line when it does not.
pub async fn bus_available(url: &str) -> bool {
    let addr = url.rsplit("//").next().unwrap_or(url);
    if reachable(addr).await {
        true
    } else {
        skipped(&format!("bus not reachable at {url}"));
        false
    }
}

/// A database created for one test and dropped afterwards (also when the test panics).
pub struct TestDb {
    pub url: String,
    admin_url: String,
    name: String,
}

async fn admin(url: &str) -> Option<tokio_postgres::Client> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .ok()?
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}

impl TestDb {
    /// A fresh database, or `None` (after printing SKIPPED) when PostgreSQL is not reachable.
    pub async fn create() -> Option<TestDb> {
        if reachable(PG_ADDR).await {
            for user in ["postgres", "root"] {
                let admin_url = format!("postgres://{user}@{PG_ADDR}/test");
                let Some(client) = admin(&admin_url).await else {
                    continue;
                };
                let name = format!("xindao_test_{:016x}", rand::random::<u64>());
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                return Some(TestDb {
                    url: format!("postgres://{user}@{PG_ADDR}/{name}"),
                    admin_url,
                    name,
                });
            }
        }
        skipped(&format!(
            "PostgreSQL not reachable at {PG_ADDR} (users postgres, root; database test)"
        ));
        None
    }

    /// Runs SQL as the administrator (in the `test` database).
    pub async fn admin_sql(&self, sql: &str) {
        let client = admin(&self.admin_url).await.expect("admin connection");
        client.batch_execute(sql).await.expect("admin SQL");
    }

    /// Makes the database unreachable for xindao: no new connections, existing ones terminated.
    pub async fn cut_off(&self) {
        let name = &self.name;
        self.admin_sql(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ))
        .await;
    }

    pub async fn restore(&self) {
        self.admin_sql(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        ))
        .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Some(client) = admin(&admin_url).await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A node running on a runtime of its own, so that `kill` can stop it abruptly: every task dies at once,
/// sockets are dropped without a close frame, nothing is flushed, no goodbye is said on the bus.
pub struct Node {
    pub addr: SocketAddr,
    /// The admin listener (/metrics).
    pub admin: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    pub async fn start(config: Config) -> Node {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (ready_tx, ready) = oneshot::channel();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let server = match Server::with_listener(config, listener).await {
                Ok(server) => server,
                Err(error) => {
                    let _ = ready_tx.send(Err(error.to_string()));
                    return;
                }
            };
            let admin = server
                .admin_addr()
                .expect("tests configure an admin listener");
            let _ = ready_tx.send(Ok(admin));
            let _ = server.run(std::future::pending()).await;
        });
        let admin = ready.await.unwrap().expect("node starts");
        Node {
            addr,
            admin,
            runtime: Some(runtime),
        }
    }

    /// Abrupt death.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run(command: &str, args: &[&str]) -> bool {
    Command::new(command)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Stops Redis; the guard starts it again when dropped (also when the test panics).
pub struct RedisDown;

impl RedisDown {
    pub fn stop() -> RedisDown {
        assert!(
            run("redis-cli", &["shutdown", "nosave"]) || !run("redis-cli", &["ping"]),
            "stop redis"
        );
        RedisDown
    }
}

impl Drop for RedisDown {
    fn drop(&mut self) {
        run(
            "redis-server",
            &[
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/var/lib/redis",
                "--logfile",
                "/var/log/redis/ci.log",
            ],
        );
        for _ in 0..50 {
            if run("redis-cli", &["ping"]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("WARNING: redis did not come back");
    }
}

/// Stops NATS; the guard starts it again when dropped (also when the test panics).
pub struct NatsDown;

impl NatsDown {
    pub fn stop() -> NatsDown {
        // The one nats-server of this machine, found by name and stopped by its pid.
        let pids = Command::new("pgrep")
            .args(["-x", "nats-server"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids.split_whitespace() {
            run("kill", &[pid]);
        }
        for _ in 0..50 {
            if !run("pgrep", &["-x", "nats-server"]) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        NatsDown
    }
}

impl Drop for NatsDown {
    fn drop(&mut self) {
        run(
            "start-stop-daemon",
            &[
                "--start",
                "--oknodo",
                "--background",
                "--exec",
                "/usr/sbin/nats-server",
                "--",
                "-a",
                "127.0.0.1",
                "-p",
                "4222",
                "-js",
                "-sd",
                "/var/lib/nats-server",
                "-l",
                "/var/log/nats-server.log",
            ],
        );
        for _ in 0..50 {
            if std::net::TcpStream::connect("127.0.0.1:4222").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("WARNING: nats-server did not come back");
    }
}
