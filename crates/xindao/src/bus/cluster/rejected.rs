//! Why a bus envelope was dropped: the `reason` label of `xindao_bus_rejected_total`. Its own file because both
//! the seal check (`auth.rs`) and the replay guard (`replay.rs`) give these reasons.

/// Why an envelope was dropped: the `reason` label of `xindao_bus_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Larger than [`super::auth::MAX_ENVELOPE_BYTES`].
    Oversize,
    /// No seal: an old node, or someone publishing on the channel.
    Unsigned,
    /// Sealed with another secret, or altered on the way.
    BadSignature,
    /// Sealed, but not an envelope this version understands.
    Malformed,
    /// Sent outside the replay window.
    Stale,
    /// Seen before.
    Replayed,
}

impl Rejected {
    pub const ALL: [Rejected; 6] = [
        Rejected::Oversize,
        Rejected::Unsigned,
        Rejected::BadSignature,
        Rejected::Malformed,
        Rejected::Stale,
        Rejected::Replayed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Oversize => "oversize",
            Rejected::Unsigned => "unsigned",
            Rejected::BadSignature => "bad_signature",
            Rejected::Malformed => "malformed",
            Rejected::Stale => "stale",
            Rejected::Replayed => "replayed",
        }
    }
}
