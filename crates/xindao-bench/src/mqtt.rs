//! The few MQTT 3.1.1 packets the fan-out scenario needs to drive a Mosquitto broker: CONNECT, SUBSCRIBE, PUBLISH
//! (QoS 0 to subscribers, QoS 1 from publishers, so the broker's PUBACK is the ack) and PUBACK. No keep-alive:
//! the connections live for one scenario.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client;

pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const SUBACK: u8 = 9;

/// One packet as read: its type (the fixed header's high nibble), flags (low nibble) and body.
pub struct Packet {
    pub kind: u8,
    pub flags: u8,
    pub body: Bytes,
}

impl Packet {
    /// The packet's length on the wire: the first byte, the remaining length (1-4 bytes) and the body.
    pub fn wire_len(&self) -> usize {
        let n = self.body.len();
        let len_bytes = match n {
            0..=127 => 1,
            128..=16_383 => 2,
            16_384..=2_097_151 => 3,
            _ => 4,
        };
        1 + len_bytes + n
    }
}

/// One MQTT connection over loopback TCP.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    next_packet_id: u16,
}

impl Conn {
    /// Connects from the next loopback source address and waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Result<Conn> {
        let stream = client::tcp_connect(addr).await?;
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
            next_packet_id: 0,
        };
        let mut body = BytesMut::new();
        put_str(&mut body, "MQTT");
        body.put_u8(4); // protocol level 3.1.1
        body.put_u8(0x02); // clean session
        body.put_u16(0); // no keep-alive
        put_str(&mut body, client_id);
        conn.write(0x10, &body).await?;
        let ack = conn.next().await?;
        if ack.kind != CONNACK || ack.body.len() != 2 || ack.body[1] != 0 {
            bail!(
                "CONNACK refused: type {} body {:?}",
                ack.kind,
                &ack.body[..]
            );
        }
        Ok(conn)
    }

    /// Subscribes to one topic at QoS 0 and waits for the SUBACK.
    pub async fn subscribe(&mut self, topic: &str) -> Result<()> {
        let id = self.packet_id();
        let mut body = BytesMut::new();
        body.put_u16(id);
        put_str(&mut body, topic);
        body.put_u8(0);
        self.write(0x82, &body).await?;
        let ack = self.next().await?;
        if ack.kind != SUBACK || ack.body.len() != 3 || ack.body[2] == 0x80 {
            bail!("SUBACK refused: type {} body {:?}", ack.kind, &ack.body[..]);
        }
        Ok(())
    }

    /// Publishes at QoS 1; the broker answers with a PUBACK carrying the returned packet id.
    pub async fn publish_qos1(&mut self, topic: &str, payload: &[u8]) -> Result<u16> {
        let id = self.packet_id();
        let mut body = BytesMut::with_capacity(4 + topic.len() + payload.len());
        put_str(&mut body, topic);
        body.put_u16(id);
        body.put_slice(payload);
        self.write(0x32, &body).await?;
        Ok(id)
    }

    /// The next packet. Cancel-safe: a packet is taken from the buffer only once it is complete.
    pub async fn next(&mut self) -> Result<Packet> {
        loop {
            if let Some(packet) = take_packet(&mut self.buf)? {
                return Ok(packet);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }

    fn packet_id(&mut self) -> u16 {
        // Packet id 0 is not allowed.
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        self.next_packet_id
    }

    async fn write(&mut self, first_byte: u8, body: &[u8]) -> Result<()> {
        let mut packet = BytesMut::with_capacity(5 + body.len());
        packet.put_u8(first_byte);
        let mut len = body.len();
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            packet.put_u8(byte);
            if len == 0 {
                break;
            }
        }
        packet.put_slice(body);
        self.stream.write_all(&packet).await?;
        Ok(())
    }
}

/// A PUBLISH body's payload (QoS 0: no packet id after the topic).
pub fn publish_payload(packet: &Packet) -> Result<&[u8]> {
    let body = &packet.body[..];
    let topic_len = usize::from(u16::from_be_bytes(
        body.get(..2).context("short PUBLISH")?.try_into()?,
    ));
    let mut start = 2 + topic_len;
    if packet.flags & 0x06 != 0 {
        start += 2;
    }
    body.get(start..).context("short PUBLISH")
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

fn take_packet(buf: &mut BytesMut) -> Result<Option<Packet>> {
    let mut len = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7f) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header > 4 {
            bail!("malformed remaining length");
        }
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    let first = buf[0];
    buf.advance(header);
    Ok(Some(Packet {
        kind: first >> 4,
        flags: first & 0x0f,
        body: buf.split_to(len).freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_is_taken_only_once_whole() {
        // PUBLISH, QoS 0, topic "a/b", a 200-byte payload: remaining length 205 needs two bytes (0xcd 0x01).
        let mut wire = vec![0x30, 0xcd, 0x01, 0x00, 0x03, b'a', b'/', b'b'];
        wire.extend(std::iter::repeat_n(b'x', 200));
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.put_u8(*byte);
            let whole = i + 1 == 208;
            match take_packet(&mut buf).unwrap() {
                Some(p) => {
                    assert!(whole, "taken after {} bytes", i + 1);
                    assert_eq!((p.kind, p.flags, p.body.len()), (PUBLISH, 0, 205));
                    assert_eq!(p.wire_len(), 208);
                    assert_eq!(publish_payload(&p).unwrap(), &[b'x'; 200][..]);
                }
                None => assert!(!whole, "not taken after the last byte"),
            }
        }
        buf.put_slice(&[0x40, 0x02, 0x00, 0x07, 0x40]); // a PUBACK for packet 7, and the next one's first byte
        let ack = take_packet(&mut buf).unwrap().expect("the PUBACK follows");
        assert_eq!((ack.kind, &ack.body[..]), (PUBACK, &[0u8, 7][..]));
        assert!(take_packet(&mut buf).unwrap().is_none());
    }

    #[test]
    fn a_qos1_publish_payload_skips_the_packet_id() {
        let packet = Packet {
            kind: PUBLISH,
            flags: 0x02,
            body: Bytes::from_static(b"\x00\x01t\x00\x09{}"),
        };
        assert_eq!(publish_payload(&packet).unwrap(), b"{}");
        let short = Packet {
            kind: PUBLISH,
            flags: 0,
            body: Bytes::from_static(b"\x00\x09t"),
        };
        assert!(publish_payload(&short).is_err());
    }

    #[test]
    fn a_remaining_length_over_four_bytes_is_refused() {
        let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(take_packet(&mut buf).is_err());
    }
}
