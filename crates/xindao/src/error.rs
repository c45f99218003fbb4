//! The one error type of the library, and its single mapping to wire error codes and HTTP statuses.

use axum::http::StatusCode;

/// Everything that can go wrong while serving a request. Each variant maps to exactly one stable wire code
/// (see docs/protocol.md, "Error codes").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown operation `{0}`")]
    UnknownOp(String),
    #[error("{0}")]
    InvalidArgs(String),
    #[error("{0}")]
    InvalidMessage(String),
    #[error("{0}")]
    MessageTooLong(String),
    /// An upload over its kind's size limit.
    #[error("{0}")]
    TooLarge(String),
    /// An upload whose content is not of a type its kind accepts (read from its bytes).
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("missing, invalid or expired session")]
    Unauthorized,
    /// A business JWT that does not verify (the reason says why).
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A business JWT past its `exp`: get a fresh one.
    #[error("token expired")]
    TokenExpired,
    /// The before-send hook refused the message; its reason code.
    #[error("rejected: {0}")]
    Rejected(String),
    /// WeChat's content check judged the text risky (or "review", when configured to refuse those).
    #[error("the content check refused this message")]
    ContentRejected,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    /// A per-user cap (memberships, rooms owned) would be exceeded.
    #[error("{0}")]
    LimitReached(&'static str),
    /// A recall asked for later than `recall_window_secs` after the message was sent.
    #[error("a message can only be recalled within {window_secs} s of sending it")]
    RecallWindowPassed { window_secs: i64 },
    #[error("too many requests, retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error("{0}")]
    TooManyConnections(&'static str),
    #[error("the server holds its maximum number of connections")]
    ServerFull,
    #[error("WeChat login failed: {0}")]
    WeChat(#[from] WeChatError),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Server API: a body that is not JSON, or not a JSON object.
    #[error("{0}")]
    InvalidJson(String),
    /// Server API: a request body over the limit.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// Server API: the key lacks the scope a route needs.
    #[error("this API key lacks the `{0}` scope")]
    InsufficientScope(&'static str),
    /// The user is banned (login refused).
    #[error("this user is banned")]
    Banned,
    /// The sender is muted in this conversation.
    #[error("you are muted in this conversation")]
    Muted,
    #[error("internal error")]
    Internal(String),
}

/// Outcomes of a WeChat `code2Session` call that are not a session. WeChat's own `errmsg` and transport
/// details are logged, never part of these messages (they reach the client).
#[derive(Debug, thiserror::Error)]
pub enum WeChatError {
    #[error("invalid or used login code (errcode {0})")]
    InvalidCode(i64),
    #[error("WeChat rate-limited this login (errcode 45011)")]
    RateLimited,
    #[error("WeChat flags this user as high-risk (errcode 40226)")]
    UserBlocked,
    #[error("WeChat is busy, retry (errcode -1)")]
    Busy,
    #[error("WeChat refused the login (errcode {errcode})")]
    Other { errcode: i64 },
    #[error("WeChat could not be reached or gave an unreadable answer")]
    Transport,
}

impl Error {
    /// The stable machine-readable code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::UnknownOp(_) => "unknown_op",
            Error::InvalidArgs(_) => "invalid_args",
            Error::InvalidMessage(_) => "invalid_message",
            Error::MessageTooLong(_) => "message_too_long",
            Error::TooLarge(_) => "too_large",
            Error::UnsupportedMedia(_) => "unsupported_media",
            Error::Unauthorized => "unauthorized",
            Error::InvalidToken(_) => "invalid_token",
            Error::TokenExpired => "token_expired",
            Error::Rejected(_) => "rejected",
            Error::ContentRejected => "content_rejected",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::LimitReached(_) => "limit_reached",
            Error::RecallWindowPassed { .. } => "recall_window_passed",
            Error::RateLimited { .. } => "rate_limited",
            Error::TooManyConnections(_) | Error::ServerFull => "too_many_connections",
            Error::WeChat(WeChatError::InvalidCode(_)) => "invalid_code",
            Error::WeChat(WeChatError::RateLimited) => "wechat_rate_limited",
            Error::WeChat(WeChatError::UserBlocked) => "wechat_user_blocked",
            Error::WeChat(WeChatError::Busy) => "wechat_busy",
            Error::WeChat(_) => "wechat_error",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
            Error::InvalidJson(_) => "invalid_json",
            Error::BodyTooLarge(_) => "body_too_large",
            Error::InsufficientScope(_) => "insufficient_scope",
            Error::Banned => "banned",
            Error::Muted => "muted",
        }
    }

    /// The HTTP status for the same error on the HTTP API.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_)
            | Error::UnknownOp(_)
            | Error::InvalidArgs(_)
            | Error::InvalidMessage(_)
            | Error::WeChat(WeChatError::InvalidCode(_)) => StatusCode::BAD_REQUEST,
            Error::MessageTooLong(_) | Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unauthorized | Error::InvalidToken(_) | Error::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            Error::Rejected(_) | Error::ContentRejected => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Forbidden(_)
            | Error::RecallWindowPassed { .. }
            | Error::WeChat(WeChatError::UserBlocked) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::LimitReached(_) => StatusCode::CONFLICT,
            Error::RateLimited { .. }
            | Error::TooManyConnections(_)
            | Error::WeChat(WeChatError::RateLimited) => StatusCode::TOO_MANY_REQUESTS,
            Error::WeChat(WeChatError::Busy) | Error::Unavailable(_) | Error::ServerFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::WeChat(_) => StatusCode::BAD_GATEWAY,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Error::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::InsufficientScope(_) | Error::Banned | Error::Muted => StatusCode::FORBIDDEN,
        }
    }

    /// The JSON error object of the wire protocol: `{"code", "message", ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        let message = match self {
            // Internal details go to the log, not to the client.
            Error::Internal(_) => "internal server error".to_string(),
            other => other.to_string(),
        };
        let mut obj = serde_json::json!({ "code": self.code(), "message": message });
        if let Error::RateLimited { retry_after_ms } = self {
            obj["retry_after_ms"] = (*retry_after_ms).into();
        }
        if let Error::Rejected(reason) = self {
            obj["reason"] = reason.clone().into();
        }
        obj
    }
}

/// Shorthand used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
