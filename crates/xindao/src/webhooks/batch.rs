//! Claimed outbox rows become POSTs: each POST carries `{"events": [...]}`, up to its endpoint's
//! `batch_max` events, because one POST per event cost more server CPU than the chat itself
//! (docs/decisions/webhook-outbox.md). A key's (conversation's) claimed rows go whole into one batch, so
//! batches in flight at the same time never share a key, and a key's events stay in commit order: inside a
//! batch all events are in id (commit) order, and the next batch of a key is claimed only after this one
//! settled. A batch is accepted or failed as a whole.

use std::collections::HashMap;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::Delivery;
use crate::config::WebhookEndpoint;
use crate::model::now_millis;
use crate::store::OutboxRow;

/// Bytes of a failing receiver's answer kept as `last_error`.
const ERROR_BYTES: usize = 200;

/// Rows of one endpoint sent in one POST, in id order.
#[derive(Debug)]
pub struct Batch {
    pub endpoint: String,
    pub rows: Vec<OutboxRow>,
}

impl Batch {
    /// The first row of each key in the batch (the one a failure is recorded on) and the others.
    pub fn heads_and_rest(self) -> (Vec<OutboxRow>, Vec<i64>) {
        let mut seen = std::collections::HashSet::new();
        let mut heads = Vec::new();
        let mut rest = Vec::new();
        for row in self.rows {
            if seen.insert(row.key) {
                heads.push(row);
            } else {
                rest.push(row.id);
            }
        }
        (heads, rest)
    }
}

/// Packs claimed rows (in id order) into at most `max_batches` batches of at most `batch_max(endpoint)`
/// rows: the rows of one endpoint and key go together, the first `batch_max` of them at most. Returns the
/// batches and the ids of the rows left out (to be given back).
pub fn pack(
    rows: Vec<OutboxRow>,
    batch_max: impl Fn(&str) -> usize,
    max_batches: usize,
) -> (Vec<Batch>, Vec<i64>) {
    // Runs of one (endpoint, key), in the order of their first row.
    let mut order: Vec<(String, i64)> = Vec::new();
    let mut runs: HashMap<(String, i64), Vec<OutboxRow>> = HashMap::new();
    for row in rows {
        let key = (row.endpoint.clone(), row.key);
        runs.entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(row);
    }
    let mut left_out = Vec::new();
    let mut batches: Vec<Batch> = Vec::new();
    // The batch of each endpoint still being filled.
    let mut open: HashMap<String, usize> = HashMap::new();
    for key in order {
        let Some(mut run) = runs.remove(&key) else {
            continue;
        };
        let max = batch_max(&key.0).max(1);
        if run.len() > max {
            left_out.extend(run.drain(max..).map(|row| row.id));
        }
        let fits = open
            .get(&key.0)
            .is_some_and(|&i| batches[i].rows.len() + run.len() <= max);
        if fits {
            let i = open[&key.0];
            batches[i].rows.append(&mut run);
        } else if batches.len() < max_batches {
            open.insert(key.0.clone(), batches.len());
            batches.push(Batch {
                endpoint: key.0,
                rows: run,
            });
        } else {
            left_out.extend(run.iter().map(|row| row.id));
        }
    }
    for batch in &mut batches {
        batch.rows.sort_by_key(|row| row.id);
    }
    (batches, left_out)
}

/// `X-Xindao-Signature` of `body` at unix time `t`: `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// The body of a POST.
#[derive(Serialize)]
struct Body<'a> {
    events: Vec<Delivery<'a>>,
}

/// `{"events": [...]}` of a batch's rows.
pub fn body(rows: &[OutboxRow]) -> Result<Vec<u8>, String> {
    let datas = rows
        .iter()
        .map(|row| {
            serde_json::value::RawValue::from_string(row.data.clone())
                .map_err(|_| format!("stored data of event {} is not JSON", row.id))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let events = rows
        .iter()
        .zip(&datas)
        .map(|(row, data)| Delivery {
            id: row.id.to_string(),
            event: &row.event,
            created_at: row.created_at,
            request_id: row.request_id.as_deref(),
            data,
        })
        .collect();
    serde_json::to_vec(&Body { events }).map_err(|e| format!("encode: {e}"))
}

/// One signed POST of a batch: `Ok` when the receiver answered 2xx, else why not.
pub async fn deliver(
    http: &reqwest::Client,
    endpoint: Option<&Arc<WebhookEndpoint>>,
    rows: &[OutboxRow],
) -> Result<(), String> {
    let Some(endpoint) = endpoint else {
        return Err("endpoint no longer configured".into());
    };
    let body = body(rows)?;
    let t = (now_millis() / 1000) as u64;
    let signature = signature(endpoint.secret.as_str().as_bytes(), t, &body);
    let sent = http
        .post(&endpoint.url)
        .header("Content-Type", "application/json")
        .header("X-Xindao-Signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(ERROR_BYTES).collect();
            Err(format!("HTTP {status}: {text}"))
        }
        Err(error) => Err(format!("{error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, endpoint: &str, key: i64) -> OutboxRow {
        OutboxRow {
            id,
            endpoint: endpoint.into(),
            key,
            event: "message.created".into(),
            data: format!("{{\"n\":{id}}}"),
            created_at: 1,
            attempts: 0,
            request_id: None,
        }
    }

    fn ids(batch: &Batch) -> Vec<i64> {
        batch.rows.iter().map(|r| r.id).collect()
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_t_dot_body() {
        // Checked against: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn keys_stay_whole_and_in_order_across_endpoints() {
        let rows = vec![
            row(1, "a", 10),
            row(2, "a", 11),
            row(3, "b", 10),
            row(4, "a", 10),
            row(5, "a", 12),
        ];
        let (batches, left) = pack(rows, |_| 3, 10);
        assert!(left.is_empty());
        let got: Vec<(String, Vec<i64>)> = batches
            .iter()
            .map(|b| (b.endpoint.clone(), ids(b)))
            .collect();
        // Key 12 no longer fits a's first batch (3 rows): it opens a second one.
        assert_eq!(
            got,
            vec![
                ("a".into(), vec![1, 2, 4]),
                ("b".into(), vec![3]),
                ("a".into(), vec![5]),
            ]
        );
    }

    #[test]
    fn a_long_run_is_cut_and_extra_batches_are_left_out() {
        let rows = (1..=5).map(|id| row(id, "a", 7)).chain([row(6, "a", 8)]);
        let (batches, left) = pack(rows.collect(), |_| 2, 1);
        assert_eq!(batches.len(), 1);
        assert_eq!(ids(&batches[0]), vec![1, 2]);
        assert_eq!(left, vec![3, 4, 5, 6]);
    }

    #[test]
    fn the_body_lists_events_in_order_with_their_ids() {
        let body = body(&[row(3, "a", 1), row(9, "a", 2)]).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["events"][0]["id"], "3");
        assert_eq!(value["events"][1]["id"], "9");
        assert_eq!(value["events"][1]["data"]["n"], 9);
        let mut bad = row(4, "a", 1);
        bad.data = "not json".into();
        assert!(super::body(&[bad]).is_err());
    }

    #[test]
    fn a_failed_batch_names_the_first_row_of_each_key() {
        let batch = Batch {
            endpoint: "a".into(),
            rows: vec![row(1, "a", 5), row(2, "a", 6), row(3, "a", 5)],
        };
        let (heads, rest) = batch.heads_and_rest();
        assert_eq!(heads.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(rest, vec![3]);
    }
}
