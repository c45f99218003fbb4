//! Authenticated bus envelopes. Anyone who can publish on the cluster's Redis channel or NATS subject could
//! otherwise speak for a node: forge messages "from" a user, add themselves to a conversation, fake presence.
//! So every envelope travels sealed with an HMAC-SHA256 under the shared `cluster_secret`, computed over the
//! exact bytes of its JSON, which names the sending node, its boot (random per process), a per-boot counter
//! and the sending time. A receiver applies an envelope only if it is small enough, its tag verifies, it was
//! sent within [`REPLAY_WINDOW`] of the receiver's clock, and its (boot, counter) was not seen before
//! (`replay.rs`).
//!
//! Wire form: `xd1.` | 32-byte tag | JSON. See docs/decisions/cluster-bus-auth.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use super::rejected::Rejected;
use super::replay::ReplayGuard;
pub use super::replay::REPLAY_WINDOW;
use super::wire::{Envelope, Wire};
use crate::metrics::{BusRejectLabels, Metrics};

/// Largest envelope sent or accepted. A message push is bounded by `max_frame_bytes` (64 KiB by default);
/// a presence snapshot is split into chunks of [`super::SNAPSHOT_CHUNK`] users to stay well below this.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// At most one warning per this long about rejected envelopes (each is counted in the metric).
const WARN_EVERY_MS: u64 = 10_000;

const MAGIC: &[u8] = b"xd1.";
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + TAG_LEN;

/// This node's side of the bus: seals what it sends, and lets through only what verifies.
pub struct Gate {
    node: String,
    seal: Seal,
    sender: Sender,
    guard: ReplayGuard,
    metrics: Metrics,
    last_warn_ms: AtomicU64,
    unwarned: AtomicU64,
}

impl Gate {
    pub fn new(node: String, secret: &[u8], metrics: Metrics) -> Gate {
        // Every reason shows in /metrics from the start, at 0.
        for reason in Rejected::ALL {
            let _ = metrics.bus_rejected.get_or_create(&BusRejectLabels {
                reason: reason.as_str(),
            });
        }
        Gate {
            node,
            seal: Seal::new(secret),
            sender: Sender::new(),
            guard: ReplayGuard::default(),
            metrics,
            last_warn_ms: AtomicU64::new(0),
            unwarned: AtomicU64::new(0),
        }
    }

    /// The sealed bytes of `body` from this node, or `None` if it cannot be sent (too big).
    pub fn seal(&self, body: Wire) -> Option<Vec<u8>> {
        let envelope = Envelope {
            node: self.node.clone(),
            boot: self.sender.boot,
            seq: self.sender.next_seq(),
            ts: now_ms(),
            request_id: crate::obs::request_id::current().map(|id| id.0.to_string()),
            traceparent: crate::obs::otel::traceparent(),
            body,
        };
        let mut out = Seal::buffer();
        serde_json::to_writer(&mut out, &envelope).ok()?;
        if out.len() > MAX_ENVELOPE_BYTES {
            tracing::warn!(
                bytes = out.len(),
                "cluster envelope over {MAX_ENVELOPE_BYTES} bytes not sent"
            );
            return None;
        }
        self.seal.seal(&mut out);
        Some(out)
    }

    /// The envelope `payload` carries from another node, if it verifies; `None` for our own echo and for
    /// everything rejected (counted, and warned about at most every 10 s).
    pub fn open(&self, payload: &[u8]) -> Option<Envelope> {
        match self.check(payload) {
            Ok(envelope) => envelope,
            Err(reason) => {
                self.reject(reason);
                None
            }
        }
    }

    fn check(&self, payload: &[u8]) -> Result<Option<Envelope>, Rejected> {
        let json = self.seal.open(payload)?;
        let envelope: Envelope = serde_json::from_slice(json).map_err(|_| Rejected::Malformed)?;
        if envelope.node == self.node {
            return Ok(None);
        }
        self.guard.check(
            &envelope.node,
            envelope.boot,
            envelope.seq,
            envelope.ts,
            now_ms(),
        )?;
        crate::obs::hops::bus_received(&envelope.node, envelope.ts, now_ms());
        Ok(Some(envelope))
    }

    fn reject(&self, reason: Rejected) {
        self.metrics
            .bus_rejected
            .get_or_create(&BusRejectLabels {
                reason: reason.as_str(),
            })
            .inc();
        let now = now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let also = self.unwarned.swap(0, Ordering::Relaxed);
            tracing::warn!(
                reason = reason.as_str(),
                also_rejected_since_last_warning = also,
                "cluster bus envelope rejected (not applied): check cluster_secret on every node, \
                 and who can publish on the bus"
            );
        } else {
            self.unwarned.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Seals and opens envelopes under one cluster secret.
pub struct Seal {
    /// Keyed once: each envelope clones this instead of redoing the key schedule.
    keyed: Hmac<Sha256>,
}

impl Seal {
    pub fn new(secret: &[u8]) -> Seal {
        // HMAC accepts keys of any length; the length is checked by the configuration.
        let keyed =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        Seal { keyed }
    }

    /// A buffer to write the JSON into, after room for the header.
    pub fn buffer() -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; TAG_LEN]);
        out
    }

    /// Fills in the tag of a [`Seal::buffer`] holding the JSON after its header.
    pub fn seal(&self, buffer: &mut [u8]) {
        let mut mac = self.keyed.clone();
        mac.update(&buffer[HEADER_LEN..]);
        let tag = mac.finalize().into_bytes();
        buffer[MAGIC.len()..HEADER_LEN].copy_from_slice(&tag);
    }

    /// The JSON of a sealed envelope whose tag verifies (compared in constant time).
    pub fn open<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], Rejected> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(Rejected::Oversize);
        }
        if bytes.len() < HEADER_LEN || !bytes.starts_with(MAGIC) {
            return Err(Rejected::Unsigned);
        }
        let (tag, json) = bytes[MAGIC.len()..].split_at(TAG_LEN);
        let mut mac = self.keyed.clone();
        mac.update(json);
        mac.verify_slice(tag).map_err(|_| Rejected::BadSignature)?;
        Ok(json)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The sender's side of replay protection: this process's boot id and counter.
pub struct Sender {
    pub boot: u64,
    seq: AtomicU64,
}

impl Sender {
    pub fn new() -> Sender {
        Sender {
            boot: rand::random(),
            seq: AtomicU64::new(0),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn sealed(seal: &Seal, json: &[u8]) -> Vec<u8> {
        let mut out = Seal::buffer();
        out.extend_from_slice(json);
        seal.seal(&mut out);
        out
    }

    #[test]
    fn only_the_same_secret_opens_an_unaltered_envelope() {
        let seal = Seal::new(KEY);
        let bytes = sealed(&seal, br#"{"t":"hello"}"#);
        assert_eq!(seal.open(&bytes), Ok(&br#"{"t":"hello"}"#[..]));
        let other = Seal::new(b"another secret, also thirty-two bytes");
        assert_eq!(other.open(&bytes), Err(Rejected::BadSignature));
        let mut altered = bytes.clone();
        *altered.last_mut().unwrap() = b' ';
        assert_eq!(seal.open(&altered), Err(Rejected::BadSignature));
        assert_eq!(seal.open(br#"{"t":"hello"}"#), Err(Rejected::Unsigned));
        assert_eq!(seal.open(b"xd1."), Err(Rejected::Unsigned));
        let huge = sealed(&seal, &vec![b' '; MAX_ENVELOPE_BYTES]);
        assert_eq!(seal.open(&huge), Err(Rejected::Oversize));
    }

    /// `cargo test --release -p xindao --lib hmac_cost -- --ignored --nocapture`: the cost per envelope of
    /// sealing and of opening (tag, JSON, replay check) a typical message push, next to plain JSON.
    #[test]
    #[ignore]
    fn hmac_cost() {
        use crate::model::UserId;
        let gate = Gate::new("node0".into(), KEY, Metrics::default());
        let reader = Gate::new("node1".into(), KEY, Metrics::default());
        let frame = format!(
            r#"{{"event":"message","data":{{"conversation_id":42,"seq":1234,"sender_id":7,"cmid":"c-1","kind":"text","content":"{}","created_at":1764750000000}}}}"#,
            "x".repeat(200)
        );
        let body = || Wire::User {
            user_id: 7 as UserId,
            frame: frame.clone(),
        };
        let rounds = 200_000;
        let time = |f: &mut dyn FnMut()| {
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                f();
            }
            start.elapsed().as_nanos() as f64 / rounds as f64
        };
        let json_only = time(&mut || {
            std::hint::black_box(serde_json::to_vec(&body()).unwrap());
        });
        let sealed: Vec<Vec<u8>> = (0..rounds).map(|_| gate.seal(body()).unwrap()).collect();
        let bytes = sealed[0].len();
        let seal = time(&mut || {
            std::hint::black_box(gate.seal(body()).unwrap());
        });
        let mut next = sealed.iter();
        let open = time(&mut || {
            std::hint::black_box(reader.open(next.next().unwrap()).unwrap());
        });
        let tag_only = time(&mut || {
            std::hint::black_box(reader.seal.open(&sealed[0]).unwrap());
        });
        println!(
            "envelope {bytes} B: encode (JSON only) {json_only:.0} ns, seal (JSON + HMAC) {seal:.0} ns, \
             open (HMAC + JSON + replay) {open:.0} ns, of which HMAC verify {tag_only:.0} ns"
        );
    }
}
