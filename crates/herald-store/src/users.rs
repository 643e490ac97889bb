//! Getting users in: `UserRecord` (one row of an import or of a `/users/track` call) and
//! `upsert_users`, a batched multi-row `INSERT ... ON CONFLICT DO UPDATE` in one transaction.
//! Reading them back for a campaign is `audience.rs`; parsing CSV or JSON is the caller's job.
//!
//! `messenger_id` is kept as Braze keeps it, an attribute of the user (a column here), because
//! an import may not say which page the PSID belongs to. When the record names its `page_id`,
//! the import also creates the Messenger identity (page, PSID) and links it to the user: the
//! import is authoritative, so it relinks a PSID that pointed elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use herald_core::User;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::backend::{numbered, with_pool};
use crate::error::query;
use crate::stamp::{now_ms, to_ms};
use crate::{Store, StoreError};

/// External ids given to people known only by a PSID (no ref or import linked them yet):
/// `anon-` and 24 random hex digits, stored with the identity. They reveal nothing of the PSID.
pub const ANON_PREFIX: &str = "anon-";
/// Attribute added to a streamed user that has a Messenger identity on the page: `"true"` when
/// they opted out of the page's marketing messages, else `"false"`.
pub const OPTED_OUT_ATTRIBUTE: &str = "opted_out";
/// Attribute added next to `opted_out = "true"`: when, as RFC 3339.
pub const OPTED_OUT_AT_ATTRIBUTE: &str = "opted_out_at";

/// Users per INSERT statement (6 parameters each: far below both databases' limits).
const USERS_PER_STATEMENT: usize = 500;
/// Identities per INSERT statement (6 parameters each).
const IDENTITIES_PER_STATEMENT: usize = 500;

/// One user to create or update.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UserRecord {
    /// The user's id in the customer's systems. Must not be blank.
    pub external_id: String,
    /// The PSID, Braze's `messenger_id` attribute (`psid` is the caller's alias). Blank = absent.
    pub messenger_id: Option<String>,
    /// When the user last wrote to the page, if the source knows it. Only ever moves forward.
    pub last_inbound_at: Option<OffsetDateTime>,
    /// Every other attribute. Merged: keys given here overwrite, keys not given are kept.
    pub attributes: BTreeMap<String, String>,
    /// The page the PSID belongs to. With a `messenger_id`, the identity (page, PSID) is created
    /// or linked to this user.
    pub page_id: Option<String>,
}

impl UserRecord {
    /// A record with only an external id.
    pub fn new(external_id: impl Into<String>) -> Self {
        Self {
            external_id: external_id.into(),
            ..Self::default()
        }
    }

    /// A record from a segment row, optionally tied to a page.
    pub fn from_user(user: &User, page_id: Option<&str>) -> Self {
        Self {
            external_id: user.external_id.clone(),
            messenger_id: user.messenger_id.clone(),
            last_inbound_at: user.last_inbound_at,
            attributes: user.attributes.clone(),
            page_id: page_id.map(str::to_owned),
        }
    }

    fn psid(&self) -> Option<&str> {
        self.messenger_id
            .as_deref()
            .map(str::trim)
            .filter(|psid| !psid.is_empty())
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: the PSID and attribute values stay out of logs.
        f.debug_struct("UserRecord")
            .field("external_id", &self.external_id)
            .field("messenger_id", &self.psid().map(|_| "<set>"))
            .field("last_inbound_at", &self.last_inbound_at)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .field("page_id", &self.page_id)
            .finish()
    }
}

/// A user after merging the batch's rows with the same external id.
struct MergedUser<'a> {
    external_id: &'a str,
    messenger_id: Option<&'a str>,
    last_inbound_ms: Option<i64>,
    attributes: BTreeMap<&'a str, &'a str>,
}

/// An identity row of the batch.
struct ImportedIdentity<'a> {
    page_id: &'a str,
    psid: &'a str,
    external_id: &'a str,
    last_inbound_ms: Option<i64>,
}

impl Store {
    /// Creates or updates `records` in one transaction and returns how many distinct users it
    /// wrote. Rows with the same external id are merged first (later rows win), so the result
    /// is the same as upserting them one by one. Fails whole, writing nothing, when any
    /// external id is blank. Callers batch: a few thousand records per call is a good size.
    pub async fn upsert_users(&self, records: &[UserRecord]) -> Result<u64, StoreError> {
        if let Some(line) = records.iter().position(|r| r.external_id.trim().is_empty()) {
            return Err(StoreError::Invalid {
                what: "user record",
                reason: format!("record {} of the batch has a blank external_id", line + 1),
            });
        }
        let (mut users, mut identities) = merge(records);
        // Rows in key order: two imports writing overlapping users at once on PostgreSQL then
        // take their row locks in the same order and cannot deadlock.
        users.sort_unstable_by_key(|user| user.external_id);
        identities.sort_unstable_by_key(|identity| (identity.page_id, identity.psid));
        let now = now_ms();
        let full_users_sql = self.users_sql(USERS_PER_STATEMENT);
        let full_identities_sql = self.identities_sql(IDENTITIES_PER_STATEMENT);
        with_pool!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(query("upsert_users"))?;
            for chunk in users.chunks(USERS_PER_STATEMENT) {
                let partial;
                let sql = if chunk.len() == USERS_PER_STATEMENT {
                    &full_users_sql
                } else {
                    partial = self.users_sql(chunk.len());
                    &partial
                };
                let mut statement = sqlx::query(sql);
                for user in chunk {
                    statement = statement
                        .bind(user.external_id)
                        .bind(user.messenger_id)
                        .bind(user.last_inbound_ms)
                        .bind(Json(&user.attributes))
                        .bind(now)
                        .bind(now);
                }
                statement.execute(&mut *tx).await.map_err(query("upsert_users"))?;
            }
            for chunk in identities.chunks(IDENTITIES_PER_STATEMENT) {
                let partial;
                let sql = if chunk.len() == IDENTITIES_PER_STATEMENT {
                    &full_identities_sql
                } else {
                    partial = self.identities_sql(chunk.len());
                    &partial
                };
                let mut statement = sqlx::query(sql);
                for identity in chunk {
                    statement = statement
                        .bind(identity.page_id)
                        .bind(identity.psid)
                        .bind(identity.external_id)
                        .bind(now)
                        .bind(identity.last_inbound_ms)
                        .bind(now);
                }
                statement.execute(&mut *tx).await.map_err(query("upsert_users"))?;
            }
            tx.commit().await.map_err(query("upsert_users"))?;
        });
        Ok(users.len() as u64)
    }

    fn users_sql(&self, rows: usize) -> String {
        let values = self.db.backend().values(rows, 6, "");
        format!(
            "INSERT INTO users \
               (external_id, messenger_id, last_inbound_at_ms, attributes, created_at_ms, updated_at_ms) \
             VALUES {values} \
             ON CONFLICT (external_id) DO UPDATE SET \
               messenger_id = COALESCE(excluded.messenger_id, users.messenger_id), \
               last_inbound_at_ms = CASE \
                 WHEN users.last_inbound_at_ms IS NULL \
                   OR excluded.last_inbound_at_ms > users.last_inbound_at_ms \
                 THEN COALESCE(excluded.last_inbound_at_ms, users.last_inbound_at_ms) \
                 ELSE users.last_inbound_at_ms END, \
               attributes = {merge}, \
               updated_at_ms = excluded.updated_at_ms",
            merge = self.db.merge_attributes(),
        )
    }

    fn identities_sql(&self, rows: usize) -> String {
        // Created linked, so no anon_id (see the migration).
        let values = self.db.backend().values(rows, 6, ", FALSE, 'import'");
        format!(
            "INSERT INTO identities \
               (page_id, psid, external_id, first_seen_at_ms, last_inbound_at_ms, linked_at_ms, \
                opted_out, link_source) \
             VALUES {values} \
             ON CONFLICT (page_id, psid) DO UPDATE SET \
               external_id = excluded.external_id, \
               link_source = 'import', \
               linked_at_ms = excluded.linked_at_ms, \
               last_inbound_at_ms = CASE \
                 WHEN identities.last_inbound_at_ms IS NULL \
                   OR excluded.last_inbound_at_ms > identities.last_inbound_at_ms \
                 THEN COALESCE(excluded.last_inbound_at_ms, identities.last_inbound_at_ms) \
                 ELSE identities.last_inbound_at_ms END"
        )
    }
}

impl Store {
    /// The stored attributes of those of `external_ids` that exist (at most a few thousand
    /// ids per call): what `/users/track` reads before it updates counters or honours
    /// `_update_existing_only`.
    pub async fn user_attributes(
        &self,
        external_ids: &[&str],
    ) -> Result<HashMap<String, BTreeMap<String, String>>, StoreError> {
        let mut found = HashMap::with_capacity(external_ids.len());
        for chunk in external_ids.chunks(500) {
            let sql = format!(
                "SELECT external_id, attributes FROM users WHERE external_id IN ({})",
                numbered(1, chunk.len())
            );
            let rows: Vec<(String, Json<BTreeMap<String, String>>)> =
                with_pool!(&self.db, pool => {
                    let mut statement = sqlx::query_as(&sql);
                    for id in chunk {
                        statement = statement.bind(*id);
                    }
                    statement.fetch_all(pool).await
                })
                .map_err(query("user_attributes"))?;
            found.extend(
                rows.into_iter()
                    .map(|(id, Json(attributes))| (id, attributes)),
            );
        }
        Ok(found)
    }
}

/// Folds rows with the same external id (and identities with the same page and PSID) into one:
/// one statement may not update the same row twice on PostgreSQL.
fn merge(records: &[UserRecord]) -> (Vec<MergedUser<'_>>, Vec<ImportedIdentity<'_>>) {
    let mut users: Vec<MergedUser<'_>> = Vec::with_capacity(records.len());
    let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    let mut identities: Vec<ImportedIdentity<'_>> = Vec::new();
    let mut by_psid: HashMap<(&str, &str), usize> = HashMap::new();
    for record in records {
        let last_inbound_ms = record.last_inbound_at.map(to_ms);
        let psid = record.psid();
        match by_id.get(record.external_id.as_str()) {
            Some(&index) => {
                let user = &mut users[index];
                user.messenger_id = psid.or(user.messenger_id);
                user.last_inbound_ms = user.last_inbound_ms.max(last_inbound_ms);
                user.attributes.extend(
                    record
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                );
            }
            None => {
                by_id.insert(&record.external_id, users.len());
                users.push(MergedUser {
                    external_id: &record.external_id,
                    messenger_id: psid,
                    last_inbound_ms,
                    attributes: record
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                });
            }
        }
        let (Some(page_id), Some(psid)) = (record.page_id.as_deref(), psid) else {
            continue;
        };
        let identity = ImportedIdentity {
            page_id,
            psid,
            external_id: &record.external_id,
            last_inbound_ms,
        };
        match by_psid.get(&(page_id, psid)) {
            Some(&index) => {
                let previous = identities[index].last_inbound_ms;
                identities[index] = ImportedIdentity {
                    last_inbound_ms: previous.max(last_inbound_ms),
                    ..identity
                };
            }
            None => {
                by_psid.insert((page_id, psid), identities.len());
                identities.push(identity);
            }
        }
    }
    (users, identities)
}

/// A fresh `anon-...` id for an identity created unlinked (kept by the row when it exists).
pub(crate) fn new_anon_id() -> String {
    format!("{ANON_PREFIX}{:024x}", rand::random::<u128>() >> 32)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_batch_folds_rows_of_the_same_user_and_identity() {
        let row = |id: &str, psid: Option<&str>, page: Option<&str>, attrs: &[(&str, &str)]| {
            let mut record = UserRecord::new(id);
            record.messenger_id = psid.map(str::to_owned);
            record.page_id = page.map(str::to_owned);
            record.attributes = attrs
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            record
        };
        let mut later = row("u1", Some(" "), Some("p"), &[("b", "3"), ("c", "4")]);
        later.last_inbound_at = Some(datetime!(2026-01-01 00:00 UTC));
        let records = [
            row("u1", Some("11"), Some("p"), &[("a", "1"), ("b", "2")]),
            row("u2", Some("11"), Some("p"), &[]),
            later,
            row("u3", Some("33"), None, &[]),
        ];
        let (users, identities) = merge(&records);
        let summary: Vec<_> = users
            .iter()
            .map(|u| {
                (
                    u.external_id,
                    u.messenger_id,
                    u.last_inbound_ms,
                    u.attributes.clone(),
                )
            })
            .collect();
        let attrs = |pairs: &[(&'static str, &'static str)]| pairs.iter().copied().collect();
        assert_eq!(
            summary,
            [
                // A blank PSID later does not erase the earlier one.
                (
                    "u1",
                    Some("11"),
                    Some(1_767_225_600_000),
                    attrs(&[("a", "1"), ("b", "3"), ("c", "4")])
                ),
                ("u2", Some("11"), None, attrs(&[])),
                ("u3", Some("33"), None, attrs(&[])),
            ]
        );
        // (p, 11) was claimed by u1 then u2: the later row wins. u3 names no page.
        let identities: Vec<_> = identities
            .iter()
            .map(|i| (i.page_id, i.psid, i.external_id))
            .collect();
        assert_eq!(identities, [("p", "11", "u2")]);
    }

    #[test]
    fn debug_hides_the_psid_and_attribute_values() {
        let mut record = UserRecord::new("u1");
        record.messenger_id = Some("1234567890123456".into());
        record.attributes.insert("first_name".into(), "Zoë".into());
        let shown = format!("{record:?}");
        assert!(
            !shown.contains("1234567890123456") && !shown.contains("Zoë"),
            "{shown}"
        );
        assert!(
            shown.contains("first_name") && shown.contains("u1"),
            "{shown}"
        );
    }
}
