//! Media in S3-compatible object storage, against moto's standalone S3 server started by the test
//! (`pip install 'moto[server]'`; `SKIPPED` when it is not installed or does not start), and the memory a
//! 20 MB upload takes in the real binary (peak RSS before and after, from /proc).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::common::{http, login, TestServer};
use crate::media::uploaded;
use crate::media_flow::{image_message_and_download, with_secret};
use crate::services::skipped;

/// moto's S3 server on a free port of 127.0.0.1, killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    pub async fn start() -> Option<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            skipped("moto_server is not installed (pip install 'moto[server]'): S3 media storage untested");
            return None;
        };
        let moto = Moto { child, port };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(moto);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        skipped("moto_server did not start within 15 s: S3 media storage untested");
        None
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` and returns a function that points a server's config at `s3://<bucket>/chat` here.
    pub async fn bucket(
        &self,
        bucket: &str,
    ) -> impl FnOnce(&mut xindao::config::Config) + Send + 'static {
        let endpoint = self.endpoint();
        let created = http()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap();
        assert!(
            created.status().is_success(),
            "create bucket: {}",
            created.status()
        );
        let storage = format!("s3://{bucket}/chat");
        move |c: &mut xindao::config::Config| {
            with_secret(c);
            c.media.media_storage = storage;
            c.media.media_s3_endpoint = Some(endpoint);
            c.media.media_s3_region = Some("us-east-1".into());
            c.media.media_s3_access_key_id = Some("testing".into());
            c.media.media_s3_secret_access_key = Some("testing".into());
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_live_in_s3_compatible_storage() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let endpoint = moto.endpoint();
    let mut server = TestServer::start(moto.bucket("xindao-media").await).await;
    image_message_and_download(&server).await;

    // 6 MiB: more than one 5 MiB part, so a multipart upload.
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let media = uploaded(&server, &alice.token, Some("file"), "big.bin", big.clone()).await;
    let id = media["id"].as_str().unwrap();
    let url = a.ok("media_url", json!({ "media_id": id })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let whole = http()
        .get(server.url(&url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        whole.to_vec() == big,
        "the 6 MiB file comes back as it went"
    );
    let part = http()
        .get(server.url(&url))
        .header("range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        big[5_242_870..5_242_890].to_vec()
    );

    // The objects are in the bucket, under the prefix, and nothing went to local files.
    let listing = http()
        .get(format!("{endpoint}/xindao-media?list-type=2&prefix=chat/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains(&format!("{id}</Key>")), "{listing}");
    assert!(!server
        .config
        .data_dir
        .join("media")
        .join("objects")
        .exists());
    server.stop().await;
}

/// Peak resident memory of a process, in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_upload_streams_through_bounded_memory() {
    if peak_rss_kib(std::process::id()).is_none() {
        skipped("no /proc/<pid>/status VmHWM here: upload memory unmeasured");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xindao"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dev-login",
            "true",
            "--admin-listen",
            "",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("XINDAO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xindao binary");
    let addr = crate::common::listening(&mut child);
    let pid = child.id();
    let alice = login(addr, "alice").await;
    let send = |bytes: Vec<u8>| {
        let form = Form::new().part("file", Part::bytes(bytes).file_name("blob.bin"));
        http()
            .post(format!("http://{addr}/v1/media?kind=file"))
            .bearer_auth(&alice.token)
            .multipart(form)
            .send()
    };
    // Warm up (first upload creates the directories, the pools fill), then measure.
    assert_eq!(send(vec![1; 256 * 1024]).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = peak_rss_kib(pid).unwrap();
    let blob: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let started = Instant::now();
    let response = send(blob).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    let after = peak_rss_kib(pid).unwrap();
    // An image is decoded whole (bounded by media_max_image_pixels): 6 megapixels, 18 MB as RGB.
    let photo = crate::media::jpeg(3000, 2000);
    let form = Form::new().part("file", Part::bytes(photo).file_name("photo.jpg"));
    let response = http()
        .post(format!("http://{addr}/v1/media?kind=image"))
        .bearer_auth(&alice.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let after_image = peak_rss_kib(pid).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "MEDIA-UPLOAD: a 3000x2000 JPEG raised the server's peak RSS to {after_image} KiB (+{} KiB)",
        after_image.saturating_sub(after)
    );
    assert!(after_image.saturating_sub(after) < (3000 * 2000 * 4 + (32 << 20)) / 1024);
    let mb_per_s = 20.0 / elapsed.as_secs_f64();
    eprintln!(
        "MEDIA-UPLOAD: 20 MiB in {:.0} ms = {mb_per_s:.1} MiB/s; server peak RSS {} KiB before, {} KiB after (+{} KiB)",
        elapsed.as_secs_f64() * 1000.0,
        before,
        after,
        after.saturating_sub(before)
    );
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "a 20 MiB upload raised the server's peak RSS by {} KiB",
        after - before
    );
}

/// Sends a multipart upload over a raw socket, its body in `pieces` (each after its pause), and returns the
/// answer's status code (the socket may still be sending when the server answers).
async fn trickled_upload(
    addr: std::net::SocketAddr,
    token: &str,
    pieces: Vec<(Duration, Vec<u8>)>,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head =
        b"--xb\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n\r\n"
            .to_vec();
    let tail = b"\r\n--xb--\r\n".to_vec();
    let length = head.len() + tail.len() + pieces.iter().map(|(_, p)| p.len()).sum::<usize>();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let request = format!(
        "POST /v1/media HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=xb\r\nContent-Length: {length}\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        write.write_all(request.as_bytes()).await?;
        write.write_all(&head).await?;
        for (pause, piece) in pieces {
            tokio::time::sleep(pause).await;
            write.write_all(&piece).await?;
        }
        write.write_all(&tail).await?;
        std::io::Result::Ok(write)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(15), read.read(&mut buf))
            .await
            .expect("an answer within 15 s")
            .unwrap();
        assert!(read > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..read]);
    }
    writer.abort();
    let status = String::from_utf8_lossy(&answer);
    status.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_have_their_own_deadline_and_stalled_ones_are_cut_off() {
    let mut server = TestServer::start(|c| {
        c.http_header_timeout_ms = 500;
        c.media.media_upload_timeout_secs = 3;
    })
    .await;
    let alice = server.login("alice").await;
    let piece = |ms: u64| (Duration::from_millis(ms), vec![b'x'; 1024]);
    // 2 s of trickling (12 pieces 170 ms apart): past three header timeouts (1.5 s, what any other request
    // gets), within media_upload_timeout_secs: accepted.
    let started = Instant::now();
    let status = trickled_upload(
        server.addr,
        &alice.token,
        (0..12).map(|_| piece(170)).collect(),
    )
    .await;
    assert_eq!(status, 200, "a slow upload within its deadline");
    assert!(started.elapsed() > Duration::from_millis(1500));
    // Nothing for longer than the header timeout mid-body: cut off with 400.
    let status = trickled_upload(server.addr, &alice.token, vec![piece(0), piece(2000)]).await;
    assert_eq!(status, 400, "a stalled upload");
    // Trickling past media_upload_timeout_secs: 408.
    let status = trickled_upload(
        server.addr,
        &alice.token,
        (0..25).map(|_| piece(200)).collect(),
    )
    .await;
    assert_eq!(status, 408, "an upload past its deadline");
    server.stop().await;
}
