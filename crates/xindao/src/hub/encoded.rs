//! A push as the hub encodes it, once per delivery: its JSON text, for a connection's task (which writes it
//! through tungstenite) and the Wafer tunnels, and the same text as a whole WebSocket frame, for the shards'
//! direct writes (`direct.rs`: one `send` of one buffer per recipient).

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;

/// A push, encoded.
#[derive(Debug)]
pub struct Encoded {
    /// The JSON text.
    pub text: Utf8Bytes,
    /// The text as an unmasked server text frame.
    pub framed: Bytes,
}

impl Encoded {
    pub fn new(text: Utf8Bytes) -> Encoded {
        let (header, header_len) = text_frame_header(text.len());
        let mut framed = Vec::with_capacity(header_len + text.len());
        framed.extend_from_slice(&header[..header_len]);
        framed.extend_from_slice(text.as_bytes());
        Encoded {
            text,
            framed: framed.into(),
        }
    }
}

/// The header of an unmasked server text frame (RFC 6455 section 5.2) with a payload of `len` bytes: FIN and
/// the text opcode, then the length in 7, 16 or 64 bits. Returns the buffer and how much of it is used.
fn text_frame_header(len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = 0x81;
    match len {
        0..=125 => {
            header[1] = len as u8;
            (header, 2)
        }
        126..=0xffff => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            (header, 4)
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            (header, 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;

    /// The frame is tungstenite's own bytes for the same message, at each length encoding's edges.
    #[test]
    fn frames_as_tungstenite_does() {
        for len in [0, 1, 125, 126, 127, 0xffff, 0x10000, 70_000] {
            let text = "x".repeat(len);
            let mut expected = Vec::new();
            Frame::message(text.clone(), OpCode::Data(Data::Text), true)
                .format(&mut expected)
                .expect("formats");
            let encoded = super::Encoded::new(text.into());
            assert_eq!(encoded.framed.as_ref(), expected.as_slice(), "{len}");
        }
    }
}
