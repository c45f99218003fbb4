//! Media uploads through the real HTTP interface (`POST /v1/media`, multipart as browsers and
//! `wx.uploadFile` send it): each kind's metadata, and every refusal: size per kind, type read from the
//! content (a `.png` name on other bytes), a decompression bomb refused from its header, malformed and
//! non-multipart bodies, no token, the per-user rate and the daily quota. Also the helpers of `media_flow`.

use std::io::Cursor;

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::common::{http, TestServer};

/// A PNG of `w` x `h` with a gradient (so that it is not trivially compressible).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, 40, (y % 256) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    picture
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

/// An AAC recording in ADTS framing, as the mini-program's RecorderManager writes with `format: 'aac'`:
/// `frames` frames of 1024 samples at 44.1 kHz, mono (the payloads are silence-sized filler: only the
/// container is read).
pub fn adts(frames: usize) -> Vec<u8> {
    let payload = [0x21u8, 0x10, 0x04, 0x60, 0x8c, 0x1c];
    let len = 7 + payload.len();
    let mut out = Vec::new();
    for _ in 0..frames {
        out.extend_from_slice(&[
            0xFF,
            0xF1,
            0x50, // AAC LC, 44.1 kHz, mono (high bit)
            0x40 | ((len >> 11) & 0x3) as u8,
            ((len >> 3) & 0xFF) as u8,
            (((len & 0x7) << 5) as u8) | 0x1F,
            0xFC,
        ]);
        out.extend_from_slice(&payload);
    }
    out
}

/// An MP3 recording (MPEG-1 layer III, 128 kbit/s, 44.1 kHz, mono) of `frames` frames of 1152 samples, as
/// RecorderManager writes with `format: 'mp3'` (the frames are empty: only the container is read).
pub fn mp3(frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..frames {
        let mut frame = vec![0u8; 417];
        frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0xC0]);
        out.extend_from_slice(&frame);
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small PNG whose header claims `w` x `h` pixels: decoding it would allocate w*h*3 bytes.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = png(8, 8);
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height, then the chunk's CRC.
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// Uploads `bytes` as the `file` field named `name`, with `?kind=` when given: (status, body).
pub async fn upload(
    server: &TestServer,
    token: Option<&str>,
    kind: Option<&str>,
    name: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let form = Form::new()
        .text("purpose", "chat")
        .part("file", Part::bytes(bytes).file_name(name.to_string()));
    let url = match kind {
        Some(kind) => server.url(&format!("/v1/media?kind={kind}")),
        None => server.url("/v1/media"),
    };
    let mut request = http().post(url).multipart(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Uploads and expects success: the `media` object.
pub async fn uploaded(
    server: &TestServer,
    token: &str,
    kind: Option<&str>,
    name: &str,
    bytes: Vec<u8>,
) -> Value {
    let (status, body) = upload(server, Some(token), kind, name, bytes).await;
    assert_eq!(status, 200, "upload {name}: {body}");
    body["media"].clone()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn each_kind_answers_what_the_server_read_from_it() {
    let mut server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let t = alice.token.as_str();

    let image = uploaded(&server, t, Some("image"), "photo.png", png(640, 480)).await;
    assert_eq!(image["kind"], "image");
    assert_eq!(image["mime"], "image/png");
    assert_eq!(
        (image["width"].as_i64(), image["height"].as_i64()),
        (Some(640), Some(480))
    );
    assert_eq!(image["id"].as_str().unwrap().len(), 22);
    assert!(image["size"].as_i64().unwrap() > 0);

    // No kind given: the content decides; the declared name and type do not matter.
    let photo = uploaded(&server, t, None, "upload.bin", jpeg(300, 200)).await;
    assert_eq!(
        (photo["kind"].as_str(), photo["mime"].as_str()),
        (Some("image"), Some("image/jpeg"))
    );
    assert_eq!(photo["width"], 300);

    // 43 AAC frames of 1024 samples at 44.1 kHz: 998 ms.
    let voice = uploaded(&server, t, Some("voice"), "rec.aac", adts(43)).await;
    assert_eq!(
        (voice["kind"].as_str(), voice["mime"].as_str()),
        (Some("voice"), Some("audio/aac"))
    );
    assert_eq!(voice["duration_ms"], 998, "{voice}");
    assert!(voice.get("width").is_none());
    // 38 frames of 1152 samples at 44.1 kHz: 993 ms.
    let mp3 = uploaded(&server, t, None, "rec.mp3", mp3(38)).await;
    assert_eq!(
        (mp3["kind"].as_str(), mp3["mime"].as_str()),
        (Some("voice"), Some("audio/mpeg"))
    );
    let ms = mp3["duration_ms"].as_i64().unwrap();
    assert!((960..=1000).contains(&ms), "{mp3}");

    let file = uploaded(
        &server,
        t,
        Some("file"),
        "../notes 报告.txt",
        b"plain words\n".to_vec(),
    )
    .await;
    assert_eq!(file["kind"], "file");
    assert_eq!(file["mime"], "application/octet-stream");
    assert_eq!(file["name"], "notes 报告.txt");
    assert_eq!(file["size"], 12);
    // An image sent as a file stays a file (no dimensions), typed by its content.
    let as_file = uploaded(&server, t, Some("file"), "a.png", png(4, 4)).await;
    assert_eq!(
        (as_file["kind"].as_str(), as_file["mime"].as_str()),
        (Some("file"), Some("image/png"))
    );
    assert!(as_file.get("width").is_none());
    server.stop().await;
}

#[tokio::test]
async fn uploads_are_refused_by_size_type_form_and_token() {
    let mut server = TestServer::start(|c| {
        c.media.media_max_image_mb = 1;
        c.media.media_max_file_mb = 2;
        c.media.media_max_image_pixels = 10_000_000;
    })
    .await;
    let alice = server.login("alice").await;
    let t = Some(alice.token.as_str());

    // Over the kind's size: 413 too_large (an image limit of 1 MiB; 1.5 MiB of noise-like PNG bytes).
    let mut big = png(16, 16);
    big.extend(std::iter::repeat_n(7u8, 1536 * 1024));
    let (status, body) = upload(&server, t, Some("image"), "big.png", big).await;
    assert_eq!((status, code(&body)), (413, "too_large"), "{body}");
    // The same bytes as a file are within the file limit of 2 MiB.
    let (status, _) = upload(&server, t, Some("file"), "big.bin", vec![1u8; 1536 * 1024]).await;
    assert_eq!(status, 200);
    // A declared length over every limit is refused before the body is read.
    let response = http()
        .post(server.url("/v1/media"))
        .bearer_auth(&alice.token)
        .header("content-type", "multipart/form-data; boundary=x")
        .header("content-length", (64u64 << 20).to_string())
        .body(vec![0u8; 10])
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status(), 413);
    }

    // Type by content: a .png name on bytes that are not an image.
    let (status, body) = upload(
        &server,
        t,
        Some("image"),
        "cat.png",
        b"<html><script>alert(1)</script>".to_vec(),
    )
    .await;
    assert_eq!((status, code(&body)), (415, "unsupported_media"), "{body}");
    let (status, body) = upload(&server, t, Some("voice"), "rec.aac", png(4, 4)).await;
    assert_eq!((status, code(&body)), (415, "unsupported_media"), "{body}");
    // An ADTS sync word on garbage: typed as AAC by its first bytes, refused by the container reader.
    let (status, body) = upload(
        &server,
        t,
        Some("voice"),
        "rec.aac",
        vec![0xFF, 0xF1, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .await;
    assert_eq!((status, code(&body)), (415, "unsupported_media"), "{body}");
    // A decompression bomb: 100,000 x 100,000 pixels in a few hundred bytes, refused from its header.
    let (status, body) = upload(&server, t, None, "bomb.png", png_claiming(100_000, 100_000)).await;
    assert_eq!((status, code(&body)), (413, "too_large"), "{body}");
    // A truncated image: refused when decoded.
    let (status, body) = upload(
        &server,
        t,
        Some("image"),
        "cut.png",
        png(64, 64)[..120].to_vec(),
    )
    .await;
    assert_eq!((status, code(&body)), (415, "unsupported_media"), "{body}");
    let (status, body) = upload(&server, t, Some("video"), "x.bin", vec![1]).await;
    assert_eq!((status, code(&body)), (400, "invalid_args"), "{body}");
    let (status, body) = upload(&server, t, None, "empty.txt", Vec::new()).await;
    assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");

    // Not multipart, malformed multipart, no file field.
    let post = |body: &'static [u8], content_type: &'static str| {
        http()
            .post(server.url("/v1/media"))
            .bearer_auth(&alice.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (body, content_type) in [
        (&b"{\"file\":1}"[..], "application/json"),
        (
            &b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno closing boundary"[..],
            "multipart/form-data; boundary=x",
        ),
        (&b"garbage"[..], "multipart/form-data; boundary=x"),
        (
            &b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n--x--\r\n"[..],
            "multipart/form-data; boundary=x",
        ),
    ] {
        let response = post(body, content_type).await.unwrap();
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
        let answer: Value = response.json().await.unwrap();
        assert_eq!(code(&answer), "bad_request", "{answer}");
    }

    // No token, a wrong token.
    let (status, body) = upload(&server, None, None, "a.png", png(4, 4)).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, _) = upload(&server, Some("not-a-token"), None, "a.png", png(4, 4)).await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn uploads_are_rate_limited_and_bounded_by_a_daily_quota() {
    let mut server = TestServer::start(|c| {
        c.media.media_uploads_per_min = 3;
        c.media.media_quota_mb_per_day = 1;
    })
    .await;
    let alice = server.login("alice").await;
    let t = Some(alice.token.as_str());
    let (status, _) = upload(&server, t, None, "a.bin", vec![1; 600 * 1024]).await;
    assert_eq!(status, 200);
    // 600 KiB more would pass 1 MiB: refused as it streams in.
    let (status, body) = upload(&server, t, None, "b.bin", vec![2; 600 * 1024]).await;
    assert_eq!((status, code(&body)), (409, "limit_reached"), "{body}");
    let (status, _) = upload(&server, t, None, "c.bin", vec![3; 1024]).await;
    assert_eq!(status, 200);
    // The fourth upload within the minute.
    let (status, body) = upload(&server, t, None, "d.bin", vec![4; 10]).await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    // Another user has buckets of their own.
    let bob = server.login("bob").await;
    let (status, _) = upload(&server, Some(&bob.token), None, "e.bin", vec![5; 10]).await;
    assert_eq!(status, 200);
    server.stop().await;
}

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    mp4_box(kind, &[&[0u8; 4][..], body].concat())
}

/// An M4A recording (AAC LC in an MP4 container, 44.1 kHz mono) of `frames` frames of 1024 samples, as iOS
/// writes for RecorderManager's `aac` (the frames are filler: only the container is read).
pub fn m4a(frames: u32) -> Vec<u8> {
    let be = |v: u32| v.to_be_bytes();
    let ftyp = mp4_box(b"ftyp", b"M4A \0\0\0\0M4A isommp42");
    let matrix: Vec<u8> = [0x10000u32, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let ms = frames * 1024 * 1000 / 44100;
    let mvhd = full_box(
        b"mvhd",
        &[
            &be(0)[..],
            &be(0),
            &be(1000),
            &be(ms),
            &be(0x10000),
            &[1, 0],
            &[0; 10],
            &matrix,
            &[0; 24],
            &be(2),
        ]
        .concat(),
    );
    let tkhd = full_box(
        b"tkhd",
        &[
            &be(0)[..],
            &be(0),
            &be(1),
            &be(0),
            &be(ms),
            &[0; 8],
            &[0; 4],
            &[1, 0, 0, 0],
            &matrix,
            &be(0),
            &be(0),
        ]
        .concat(),
    );
    let mdhd = full_box(
        b"mdhd",
        &[
            &be(0)[..],
            &be(0),
            &be(44100),
            &be(frames * 1024),
            &[0x55, 0xC4, 0, 0],
        ]
        .concat(),
    );
    let hdlr = full_box(b"hdlr", &[&be(0)[..], b"soun", &[0; 12], b"\0"].concat());
    let smhd = full_box(b"smhd", &[0; 4]);
    let dinf = mp4_box(
        b"dinf",
        &full_box(
            b"dref",
            &[&be(1)[..], &mp4_box(b"url ", &[0, 0, 0, 1])].concat(),
        ),
    );
    // ES descriptor: decoder config (AAC, audio) with AudioSpecificConfig 0x12 0x08 (LC, 44.1 kHz, mono).
    let esds = full_box(
        b"esds",
        &[
            3, 25, 0, 1, 0, 4, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0xFA, 0, 0, 0, 0xFA, 0, 5, 2, 0x12,
            0x08, 6, 1, 2,
        ],
    );
    let mp4a = mp4_box(
        b"mp4a",
        &[
            &[0u8; 6][..],
            &[0, 1],
            &[0; 8],
            &[0, 1],
            &[0, 16],
            &[0; 4],
            &be(44100 << 16),
            &esds,
        ]
        .concat(),
    );
    let stsd = full_box(b"stsd", &[&be(1)[..], &mp4a].concat());
    let stts = full_box(b"stts", &[&be(1)[..], &be(frames), &be(1024)].concat());
    let stsc = full_box(b"stsc", &[&be(1)[..], &be(1), &be(frames), &be(1)].concat());
    let sizes: Vec<u8> = (0..frames).flat_map(|_| be(6)).collect();
    let stsz = full_box(b"stsz", &[&be(0)[..], &be(frames), &sizes].concat());
    let build = |offset: u32| {
        let stco = full_box(b"stco", &[&be(1)[..], &be(offset)].concat());
        let stbl = mp4_box(b"stbl", &[&stsd[..], &stts, &stsc, &stsz, &stco].concat());
        let minf = mp4_box(b"minf", &[&smhd[..], &dinf, &stbl].concat());
        let mdia = mp4_box(b"mdia", &[&mdhd[..], &hdlr, &minf].concat());
        let trak = mp4_box(b"trak", &[&tkhd[..], &mdia].concat());
        mp4_box(b"moov", &[&mvhd[..], &trak].concat())
    };
    let moov_len = build(0).len() as u32;
    let moov = build(ftyp.len() as u32 + moov_len + 8);
    let mdat = mp4_box(b"mdat", &vec![0x21; frames as usize * 6]);
    [ftyp, moov, mdat].concat()
}

#[tokio::test]
async fn m4a_recordings_get_their_duration_from_the_container() {
    let mut server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let voice = uploaded(&server, &alice.token, None, "rec.m4a", m4a(43)).await;
    assert_eq!(
        (voice["kind"].as_str(), voice["mime"].as_str()),
        (Some("voice"), Some("audio/mp4")),
        "{voice}"
    );
    assert_eq!(voice["duration_ms"], 998, "{voice}");
    server.stop().await;
}
