//! The webhook dead-letter list for a backend (scope `webhooks`): read it page by page, optionally for one
//! endpoint, and redrive deliveries (all, or by ids). The same functions serve `xindao webhooks dead
//! list|redrive` ([`crate::webhooks::admin`]); these routes only read the request and shape the answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::keys::Scope;
use super::{body, query, Caller};
use crate::app::App;
use crate::error::{Error, Result};
use crate::webhooks::admin;

/// Dead deliveries per page when the call names no `limit`.
const PAGE_DEFAULT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeadQuery {
    endpoint: Option<String>,
    cursor: Option<i64>,
    limit: Option<usize>,
}

/// `GET /v1/server/webhooks/dead?endpoint=&cursor=&limit=` (scope `webhooks` or `read`).
pub(super) async fn dead(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response> {
    caller.require_read(Scope::Webhooks)?;
    let q: DeadQuery = query(&uri)?;
    let page = admin::dead_page(
        app.store.as_ref(),
        q.endpoint,
        q.cursor.unwrap_or(0).max(0),
        q.limit.unwrap_or(PAGE_DEFAULT),
    )
    .await?;
    Ok(Json(page).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedriveBody {
    #[serde(default)]
    all: bool,
    ids: Option<Vec<i64>>,
}

/// `POST /v1/server/webhooks/dead/redrive` (scope `webhooks`): `{"all": true}` or `{"ids": [...]}`.
pub(super) async fn redrive(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.require(Scope::Webhooks)?;
    let b: RedriveBody = body(bytes)?;
    let ids = match (b.all, b.ids) {
        (true, None) => None,
        (false, Some(ids)) if !ids.is_empty() => Some(ids),
        _ => {
            return Err(Error::InvalidArgs(
                "give `\"all\": true` or a non-empty `ids`, not both".into(),
            ))
        }
    };
    let redriven = admin::redrive_in(app.store.as_ref(), ids).await?;
    Ok(Json(json!({ "redriven": redriven })).into_response())
}
