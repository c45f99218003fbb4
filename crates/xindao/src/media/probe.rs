//! What an upload is, read from its bytes: the type from its first bytes (`infer`), an image's dimensions
//! from its header before anything is decoded (then a bounded decode for the thumbnail), a recording's
//! duration from its container (`symphonia`'s format readers; no audio is decoded). Blocking: run on the
//! blocking pool.

use std::io::Cursor;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::error::{Error, Result};
use crate::model::MediaKind;

/// Bytes of the start of a file that type detection looks at.
pub const HEAD_BYTES: usize = 8192;
/// Longest side of a thumbnail, in pixels.
const THUMB_SIDE: u32 = 320;
/// Most packets read to measure a recording (a 10-minute AAC recording has ~28,000).
const MAX_PACKETS: usize = 200_000;

/// The type of a file from its first bytes: its MIME type and the kind it fits best.
pub fn sniff(head: &[u8]) -> (String, MediaKind) {
    let Some(found) = infer::get(head) else {
        return ("application/octet-stream".into(), MediaKind::File);
    };
    let mime = found.mime_type();
    let kind = match mime {
        "image/jpeg" | "image/png" | "image/gif" | "image/webp" => MediaKind::Image,
        "audio/aac" | "audio/m4a" | "audio/mpeg" | "audio/x-wav" => MediaKind::Voice,
        _ => MediaKind::File,
    };
    // The registered names for what infer calls otherwise.
    let mime = match mime {
        "audio/m4a" => "audio/mp4",
        "audio/x-wav" => "audio/wav",
        other => other,
    };
    (mime.to_string(), kind)
}

/// An image's dimensions (as displayed: after its EXIF orientation) and its thumbnail.
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub thumb: Vec<u8>,
    pub thumb_mime: &'static str,
}

fn unreadable_image(e: impl std::fmt::Display) -> Error {
    Error::UnsupportedMedia(format!("not a readable JPEG, PNG, GIF or WebP image: {e}"))
}

/// Measures the image at `path`, refuses it when it has more than `max_pixels` (before decoding a pixel),
/// then decodes it under matching limits and makes a thumbnail of at most [`THUMB_SIDE`] a side.
pub fn image(path: &Path, max_pixels: u64) -> Result<ImageInfo> {
    let open = || -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
        let reader = ImageReader::open(path)
            .map_err(|e| Error::Internal(format!("open upload: {e}")))?
            .with_guessed_format()
            .map_err(|e| Error::Internal(format!("read upload: {e}")))?;
        match reader.format() {
            Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP) => {
                Ok(reader)
            }
            _ => Err(unreadable_image("unknown format")),
        }
    };
    let (width, height) = open()?.into_dimensions().map_err(unreadable_image)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 || pixels > max_pixels {
        return Err(Error::TooLarge(format!(
            "the image is {width}x{height} pixels; the limit is {max_pixels} pixels"
        )));
    }
    let mut reader = open()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // The decoded picture (at most 4 bytes a pixel in the formats accepted) and the decoder's own buffers.
    limits.max_alloc = Some(pixels * 4 + 16 * 1024 * 1024);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(unreadable_image)?;
    let orientation = decoder.orientation().map_err(unreadable_image)?;
    let mut picture = DynamicImage::from_decoder(decoder).map_err(unreadable_image)?;
    picture.apply_orientation(orientation);
    let thumb = picture.thumbnail(THUMB_SIDE, THUMB_SIDE);
    let (width, height) = (picture.width(), picture.height());
    drop(picture);
    let mut out = Cursor::new(Vec::new());
    let thumb_mime = if thumb.color().has_alpha() {
        thumb
            .write_to(&mut out, ImageFormat::Png)
            .map_err(|e| Error::Internal(format!("thumbnail: {e}")))?;
        "image/png"
    } else {
        thumb
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 80))
            .map_err(|e| Error::Internal(format!("thumbnail: {e}")))?;
        "image/jpeg"
    };
    Ok(ImageInfo {
        width,
        height,
        thumb: out.into_inner(),
        thumb_mime,
    })
}

fn unreadable_audio(e: impl std::fmt::Display) -> Error {
    Error::UnsupportedMedia(format!(
        "not a readable AAC (ADTS or M4A), MP3 or WAV recording: {e}"
    ))
}

/// The duration of the recording at `path` in milliseconds, from its container's header where it says, else
/// by adding up its packets' durations (read, not decoded).
pub fn duration_ms(path: &Path, mime: &str) -> Result<i64> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::Internal(format!("open upload: {e}")))?;
    let source = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.mime_type(mime);
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(unreadable_audio)?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| unreadable_audio("no audio track"))?;
    let (track_id, params) = (track.id, track.codec_params.clone());
    let to_ms = |ts: u64| -> Option<i64> {
        if let Some(base) = params.time_base {
            let time = base.calc_time(ts);
            return Some((time.seconds as f64 * 1000.0 + time.frac * 1000.0).round() as i64);
        }
        let rate = u64::from(params.sample_rate?);
        Some((ts.saturating_mul(1000) / rate.max(1)) as i64)
    };
    if let Some(frames) = params.n_frames {
        if let Some(ms) = to_ms(frames) {
            return Ok(ms);
        }
    }
    let mut end = 0u64;
    let mut packets = 0usize;
    loop {
        match format.next_packet() {
            Ok(packet) => {
                if packet.track_id() == track_id {
                    end = end.max(packet.ts() + packet.dur());
                }
                packets += 1;
                if packets > MAX_PACKETS {
                    return Err(unreadable_audio("too many packets"));
                }
            }
            Err(symphonia::core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break
            }
            Err(e) => return Err(unreadable_audio(e)),
        }
    }
    if packets == 0 {
        return Err(unreadable_audio("no audio in it"));
    }
    to_ms(end).ok_or_else(|| unreadable_audio("no sample rate"))
}
