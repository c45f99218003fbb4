//! Profiles and finding people: `profile_set` (one's own name and avatar, told to one's connections and
//! contacts by a `profile` push), `user_search` (display-name prefix) and `contacts` (the people one shares a
//! conversation with, paged).
//!
//! Bounds, so that neither a change nor a search costs without limit:
//! - a `profile` push reaches at most [`PROFILE_PUSH_MAX`] contacts (the first by user id, online ones only);
//!   the others see the new profile wherever they next read the user (`contacts`, `room_members`,
//!   `conversations`, `user_find`, `user_search`). `profile_set` is limited to [`PROFILE_SETS_PER_MIN`] per user.
//! - `user_search` needs [`SEARCH_PREFIX_MIN`] characters, answers at most [`SEARCH_RESULTS_MAX`] users, has no
//!   cursor, and counts as a user lookup (`lookups_per_min`). Listing everyone would mean walking the prefix
//!   tree 20 names at a time at 60 requests a minute per account: a million users take over 800 hours.

use std::num::NonZeroUsize;

use serde_json::json;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::hub::Delivery;
use crate::model::{ProfileChange, User, UserId};
use crate::protocol::{
    self,
    op::{ContactsArgs, ProfileSetArgs, UserSearchArgs},
};
use crate::validate;

use super::{raw, Caller, Chat};

/// `profile_set` calls allowed per user per minute (also the burst).
pub(super) const PROFILE_SETS_PER_MIN: u32 = 10;
/// Most contacts one profile change is pushed to.
pub const PROFILE_PUSH_MAX: usize = 1000;
/// Fewest characters of a `user_search` prefix, after trimming.
pub const SEARCH_PREFIX_MIN: usize = 2;
/// Most users a `user_search` answers.
pub const SEARCH_RESULTS_MAX: usize = 20;
/// Users per `contacts` page: by default, and at most.
const CONTACTS_PAGE_DEFAULT: usize = 50;
const CONTACTS_PAGE_MAX: usize = 200;

impl Chat {
    pub(super) async fn profile_set(
        &self,
        caller: Caller,
        a: ProfileSetArgs,
    ) -> Result<Box<RawValue>> {
        let change = ProfileChange {
            display_name: a
                .display_name
                .as_deref()
                .map(|name| validate::name(name, "display_name"))
                .transpose()?,
            avatar_url: a
                .avatar_url
                .as_deref()
                .map(|url| match url {
                    "" => Ok(None),
                    url => validate::avatar_url(url).map(Some),
                })
                .transpose()?,
        };
        if change.display_name.is_none() && change.avatar_url.is_none() {
            return Err(Error::InvalidArgs(
                "give display_name, avatar_url or both".into(),
            ));
        }
        self.profile_sets.check(caller.user_id)?;
        let user = self.change_profile(caller.user_id, change).await?;
        raw(&json!({ "user": user }))
    }

    /// Applies a validated profile change and tells the user's connections and (up to 1,000)
    /// their online contacts with a `profile` push. For the server API as well as `profile_set`.
    pub async fn change_profile(&self, user_id: UserId, change: ProfileChange) -> Result<User> {
        let user = self.store.set_profile(user_id, change).await?;
        let frame = protocol::event("profile", &json!({ "user": user }));
        self.bus.publish(Delivery::User {
            user_id,
            frame: frame.clone(),
        });
        // The change is committed: a failure to read the contacts now only costs them the push.
        let contacts = match self.store.contacts(user_id, 0, PROFILE_PUSH_MAX).await {
            Ok(contacts) => contacts,
            Err(error) => {
                tracing::warn!(%error, user_id, "profile push to contacts skipped");
                Vec::new()
            }
        };
        for contact in contacts {
            if self.bus.is_online(contact.id) {
                self.bus.publish(Delivery::User {
                    user_id: contact.id,
                    frame: frame.clone(),
                });
            }
        }
        Ok(user)
    }

    pub(super) async fn user_search(
        &self,
        caller: Caller,
        a: UserSearchArgs,
    ) -> Result<Box<RawValue>> {
        let prefix = validate::name(&a.prefix, "prefix")?;
        if prefix.chars().count() < SEARCH_PREFIX_MIN {
            return Err(Error::InvalidArgs(format!(
                "prefix needs at least {SEARCH_PREFIX_MIN} characters"
            )));
        }
        self.lookups.check(caller.user_id)?;
        let limit = a
            .limit
            .map_or(SEARCH_RESULTS_MAX, NonZeroUsize::get)
            .min(SEARCH_RESULTS_MAX);
        raw(&json!({ "users": self.store.users_by_prefix(&prefix, limit).await? }))
    }

    pub(super) async fn contacts(&self, caller: Caller, a: ContactsArgs) -> Result<Box<RawValue>> {
        let limit = a
            .limit
            .map_or(CONTACTS_PAGE_DEFAULT, NonZeroUsize::get)
            .min(CONTACTS_PAGE_MAX);
        let after = match a.cursor.as_deref() {
            None => 0,
            Some(cursor) => cursor
                .parse::<UserId>()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| Error::InvalidArgs("cursor is not one this server gave".into()))?,
        };
        let mut users = self
            .store
            .contacts(caller.user_id, after, limit + 1)
            .await?;
        let has_more = users.len() > limit;
        users.truncate(limit);
        let next_cursor = users
            .last()
            .filter(|_| has_more)
            .map(|last| last.id.to_string());
        raw(&json!({ "users": users, "has_more": has_more, "next_cursor": next_cursor }))
    }
}
