//! Users' WeChat openids, read from the store once and kept in memory: a user's openid never changes (a
//! WeChat login with another openid is another user), and the content check needs it on every send.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::model::UserId;
use crate::store::Store;

/// Users remembered before the map is emptied and refilled from the store.
const REMEMBERED_MAX: usize = 200_000;

pub struct OpenIds {
    store: Arc<dyn Store>,
    known: Mutex<HashMap<UserId, Option<Arc<str>>>>,
}

impl OpenIds {
    pub fn new(store: Arc<dyn Store>) -> OpenIds {
        OpenIds {
            store,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The user's openid; `None` for users who did not log in with WeChat.
    pub async fn get(&self, user: UserId) -> Result<Option<Arc<str>>> {
        if let Some(known) = self.known.lock().get(&user) {
            return Ok(known.clone());
        }
        let openid: Option<Arc<str>> = self.store.user_openid(user).await?.map(Into::into);
        let mut known = self.known.lock();
        if known.len() >= REMEMBERED_MAX {
            known.clear();
        }
        known.insert(user, openid.clone());
        Ok(openid)
    }
}
