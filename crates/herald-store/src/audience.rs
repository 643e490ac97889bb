//! Reading users out for a campaign on one page (`segment.source = "store"`): a stream of
//! `herald_core::User` in constant memory, by keyset pagination (short queries of `PAGE_ROWS`
//! rows, so no read transaction stays open for the hours a big run may take). Filters, the
//! 24-hour window and opt-out skips are the producer's; this file only says what is known.
//!
//! The stream has two parts, each ordered by byte order of its key:
//! 1. every user (by `external_id`), with the PSID of the identity linked to them on this page
//!    (the one that wrote last), else the identity whose PSID is their `messenger_id`
//!    attribute (when it is not linked to someone else), else the attribute alone;
//! 2. people known only by an unlinked identity on this page (by PSID), under their `anon-...`
//!    id, except those whose PSID is some user's `messenger_id` (part 1 yielded them).
//!
//! A user with an identity gets `last_inbound_at` (the later of the identity's and any imported
//! time) and the attributes `opted_out` (and `opted_out_at` when true).

use std::collections::BTreeMap;

use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use herald_core::User;
use sqlx::Row;
use sqlx::types::Json;
use time::format_description::well_known::Rfc3339;

use crate::backend::{Db, numbered, with_pool};
use crate::error::query;
use crate::stamp::from_opt_ms;
use crate::{OPTED_OUT_AT_ATTRIBUTE, OPTED_OUT_ATTRIBUTE, Store, StoreError};

/// Rows per query of the stream.
const PAGE_ROWS: i64 = 1000;

/// Users with their identity on page `$1`; `WHERE` and what follows are added.
const LINKED_SELECT: &str = "\
SELECT u.external_id, u.messenger_id, u.last_inbound_at_ms, u.attributes, \
       l.psid, l.last_inbound_at_ms, l.opted_out, l.opted_out_at_ms, \
       a.psid, a.last_inbound_at_ms, a.opted_out, a.opted_out_at_ms \
FROM users u \
LEFT JOIN identities l ON l.page_id = $1 AND l.psid = ( \
    SELECT i.psid FROM identities i \
    WHERE i.page_id = $1 AND i.external_id = u.external_id \
    ORDER BY i.last_inbound_at_ms DESC NULLS LAST, i.psid LIMIT 1) \
LEFT JOIN identities a ON a.page_id = $1 AND a.psid = u.messenger_id \
    AND (a.external_id IS NULL OR a.external_id = u.external_id) ";

const ANONYMOUS_SQL: &str = "\
SELECT i.psid, i.anon_id, i.last_inbound_at_ms, i.opted_out, i.opted_out_at_ms \
FROM identities i \
WHERE i.page_id = $1 AND i.external_id IS NULL AND i.psid > $2 \
  AND NOT EXISTS (SELECT 1 FROM users u WHERE u.messenger_id = i.psid) \
ORDER BY i.psid \
LIMIT $3";

/// A position in a page's audience stream: resuming after it yields exactly the users that
/// come after it, even when users were added or removed meanwhile (it is a key, not a count).
/// Stored as text in the run record (`user:<external_id>` or `anon:<psid>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceCursor {
    /// After this user (part 1 of the stream, by `external_id`).
    User(String),
    /// After the unlinked identity with this PSID (part 2, by PSID).
    Anonymous(String),
}

impl AudienceCursor {
    /// The cursor written as `user:<external_id>` or `anon:<psid>`, or `None` when `text` is
    /// neither.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(id) = text.strip_prefix("user:") {
            Some(Self::User(id.to_owned()))
        } else {
            text.strip_prefix("anon:")
                .map(|psid| Self::Anonymous(psid.to_owned()))
        }
    }
}

impl std::fmt::Display for AudienceCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Anonymous(psid) => write!(f, "anon:{psid}"),
        }
    }
}

/// Where the stream is.
enum Phase {
    Linked { after: String },
    Anonymous { after: String },
    Done,
}

/// What an identity row says about a user.
struct Identity {
    psid: String,
    last_inbound_ms: Option<i64>,
    opted_out: bool,
    opted_out_at_ms: Option<i64>,
}

impl Store {
    /// Every user the store can target on `page_id`, as a stream (see the module doc for what
    /// is yielded and in which order). Constant memory; the stream owns a pool handle, so it
    /// can outlive `self` and move to another task.
    pub fn users_for_page(&self, page_id: &str) -> BoxStream<'static, Result<User, StoreError>> {
        self.audience(page_id, None)
            .map_ok(|(_, user)| user)
            .boxed()
    }

    /// `users_for_page` with each user's position, starting after `after` (from the start when
    /// `None`): what a resumable run reads.
    pub fn audience(
        &self,
        page_id: &str,
        after: Option<AudienceCursor>,
    ) -> BoxStream<'static, Result<(AudienceCursor, User), StoreError>> {
        let db = self.db.clone();
        let page_id = page_id.to_owned();
        let start = match after {
            None => Phase::Linked {
                after: String::new(),
            },
            Some(AudienceCursor::User(after)) => Phase::Linked { after },
            Some(AudienceCursor::Anonymous(after)) => Phase::Anonymous { after },
        };
        stream::try_unfold(start, move |phase| {
            let db = db.clone();
            let page_id = page_id.clone();
            async move { next_page(&db, &page_id, phase).await }
        })
        .map_ok(|users| stream::iter(users.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// The users of `external_ids` (at most a few hundred) as a campaign on `page_id` sees
    /// them: attributes, PSID, last inbound time and opt-out from their identity on the page.
    /// Ids the store does not know are left out.
    pub async fn users_on_page(
        &self,
        page_id: &str,
        external_ids: &[&str],
    ) -> Result<Vec<User>, StoreError> {
        if external_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{LINKED_SELECT} WHERE u.external_id IN ({}) ORDER BY u.external_id",
            numbered(2, external_ids.len())
        );
        with_pool!(&self.db, pool => {
            let mut statement = sqlx::query(&sql).bind(page_id);
            for id in external_ids {
                statement = statement.bind(*id);
            }
            let rows = statement.fetch_all(pool).await.map_err(query("users_on_page"))?;
            rows.iter().map(|row| linked_user(row, "users_on_page")).collect()
        })
    }

    /// The person behind `psid` on `page_id` as a campaign on the page sees them: the user
    /// their identity is linked to (or whose `messenger_id` it is), else the unlinked identity
    /// under its `anon-...` id. `None` when the store has never heard of the PSID.
    pub async fn user_by_psid(
        &self,
        page_id: &str,
        psid: &str,
    ) -> Result<Option<User>, StoreError> {
        type IdentityRow = (
            Option<String>,
            Option<String>,
            Option<i64>,
            bool,
            Option<i64>,
        );
        let sql = "SELECT external_id, anon_id, last_inbound_at_ms, opted_out, opted_out_at_ms \
                   FROM identities WHERE page_id = $1 AND psid = $2";
        let row: Option<IdentityRow> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(page_id).bind(psid).fetch_optional(pool).await
        })
        .map_err(query("user_by_psid"))?;
        let Some((external_id, anon_id, last_inbound_ms, opted_out, opted_out_at_ms)) = row else {
            return Ok(None);
        };
        let owner = match &external_id {
            Some(id) => Some(id.clone()),
            None => {
                let sql = "SELECT external_id FROM users WHERE messenger_id = $1 \
                           ORDER BY external_id LIMIT 1";
                with_pool!(&self.db, pool => {
                    sqlx::query_scalar(sql).bind(psid).fetch_optional(pool).await
                })
                .map_err(query("user_by_psid"))?
            }
        };
        if let Some(owner) = owner
            && let Some(user) = self.users_on_page(page_id, &[owner.as_str()]).await?.pop()
        {
            return Ok(Some(user));
        }
        let identity = Identity {
            psid: psid.to_owned(),
            last_inbound_ms,
            opted_out,
            opted_out_at_ms,
        };
        anonymous_user(external_id.or(anon_id), identity).map(Some)
    }

    /// Whether the person behind `psid` opted out of `page_id`'s marketing messages (false when
    /// the store has never heard of them).
    pub async fn is_opted_out(&self, page_id: &str, psid: &str) -> Result<bool, StoreError> {
        let sql = "SELECT opted_out FROM identities WHERE page_id = $1 AND psid = $2";
        let opted_out: Option<bool> = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(page_id).bind(psid).fetch_optional(pool).await
        })
        .map_err(query("is_opted_out"))?;
        Ok(opted_out.unwrap_or(false))
    }

    /// At least as many users as `users_for_page(page_id)` yields, in two counts: every user,
    /// and the unlinked identities on the page.
    pub async fn audience_bound(&self, page_id: &str) -> Result<u64, StoreError> {
        let sql = "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM identities \
                   WHERE page_id = $1 AND external_id IS NULL)";
        let count: i64 = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(page_id).fetch_one(pool).await
        })
        .map_err(query("audience_bound"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Graph calls Herald made for `page_id` since `since_ms` (epoch ms), as its results record
    /// them: the attempts of every job that ended sent, failed or dead since then.
    pub async fn calls_since(&self, page_id: &str, since_ms: i64) -> Result<u64, StoreError> {
        let sql = "SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM deliveries \
                   WHERE page_id = $1 AND finished_at_ms >= $2 \
                   AND status IN ('sent', 'failed', 'dead')";
        let calls: i64 = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(page_id).bind(since_ms).fetch_one(pool).await
        })
        .map_err(query("calls_since"))?;
        Ok(u64::try_from(calls).unwrap_or(0))
    }

    /// People `page_id` can message as the store knows them: its identities (PSIDs) that have
    /// not opted out. Graph's daily call budget for a page is counted per such person.
    pub async fn messageable_count(&self, page_id: &str) -> Result<u64, StoreError> {
        let sql = "SELECT COUNT(*) FROM identities WHERE page_id = $1 AND NOT opted_out";
        let count: i64 = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(page_id).fetch_one(pool).await
        })
        .map_err(query("messageable_count"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// One query's worth of users and the phase after it; `None` when the stream is over.
async fn next_page(
    db: &Db,
    page_id: &str,
    phase: Phase,
) -> Result<Option<(Vec<(AudienceCursor, User)>, Phase)>, StoreError> {
    match phase {
        Phase::Done => Ok(None),
        Phase::Linked { after } => {
            let users = linked_page(db, page_id, &after).await?;
            let next = match users.last() {
                Some((_, last)) if users.len() as i64 == PAGE_ROWS => Phase::Linked {
                    after: last.external_id.clone(),
                },
                _ => Phase::Anonymous {
                    after: String::new(),
                },
            };
            Ok(Some((users, next)))
        }
        Phase::Anonymous { after } => {
            let (users, last_psid) = anonymous_page(db, page_id, &after).await?;
            let next = match last_psid {
                Some(psid) if users.len() as i64 == PAGE_ROWS => Phase::Anonymous { after: psid },
                _ => Phase::Done,
            };
            Ok(Some((users, next)))
        }
    }
}

async fn linked_page(
    db: &Db,
    page_id: &str,
    after: &str,
) -> Result<Vec<(AudienceCursor, User)>, StoreError> {
    let error = query("users_for_page");
    let sql = format!("{LINKED_SELECT} WHERE u.external_id > $2 ORDER BY u.external_id LIMIT $3");
    with_pool!(db, pool => {
        let rows = sqlx::query(&sql)
            .bind(page_id)
            .bind(after)
            .bind(PAGE_ROWS)
            .fetch_all(pool)
            .await
            .map_err(error)?;
        let mut users = Vec::with_capacity(rows.len());
        for row in &rows {
            let user = linked_user(row, "users_for_page")?;
            users.push((AudienceCursor::User(user.external_id.clone()), user));
        }
        Ok(users)
    })
}

/// One row of `LINKED_SELECT` as a user with what their identity on the page says.
fn linked_user<R>(row: &R, what: &'static str) -> Result<User, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Json<BTreeMap<String, String>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let identity = |index: usize| -> Result<Option<Identity>, sqlx::Error> {
        let Some(psid) = row.try_get::<Option<String>, _>(index)? else {
            return Ok(None);
        };
        Ok(Some(Identity {
            psid,
            last_inbound_ms: row.try_get(index + 1)?,
            opted_out: row.try_get::<Option<bool>, _>(index + 2)?.unwrap_or(false),
            opted_out_at_ms: row.try_get(index + 3)?,
        }))
    };
    let decoded = (|| -> Result<_, sqlx::Error> {
        let Json(attributes): Json<BTreeMap<String, String>> = row.try_get(3)?;
        let user = User {
            external_id: row.try_get(0)?,
            messenger_id: row.try_get(1)?,
            last_inbound_at: None,
            attributes,
        };
        let imported_ms: Option<i64> = row.try_get(2)?;
        Ok((user, imported_ms, identity(4)?.or(identity(8)?)))
    })();
    let (user, imported_ms, identity) = decoded.map_err(query(what))?;
    with_identity(user, imported_ms, identity)
}

async fn anonymous_page(
    db: &Db,
    page_id: &str,
    after: &str,
) -> Result<(Vec<(AudienceCursor, User)>, Option<String>), StoreError> {
    let error = query("users_for_page");
    with_pool!(db, pool => {
        let rows = sqlx::query(ANONYMOUS_SQL)
            .bind(page_id)
            .bind(after)
            .bind(PAGE_ROWS)
            .fetch_all(pool)
            .await
            .map_err(error)?;
        let mut users = Vec::with_capacity(rows.len());
        let mut last_psid = None;
        for row in &rows {
            let decoded = (|| -> Result<(Option<String>, Identity), sqlx::Error> {
                let identity = Identity {
                    psid: row.try_get(0)?,
                    last_inbound_ms: row.try_get(2)?,
                    opted_out: row.try_get(3)?,
                    opted_out_at_ms: row.try_get(4)?,
                };
                Ok((row.try_get(1)?, identity))
            })();
            let (anon_id, identity) = decoded.map_err(query("users_for_page"))?;
            last_psid = Some(identity.psid.clone());
            let cursor = AudienceCursor::Anonymous(identity.psid.clone());
            users.push((cursor, anonymous_user(anon_id, identity)?));
        }
        Ok((users, last_psid))
    })
}

/// A person known only by their identity on the page, under its `anon_id`.
fn anonymous_user(anon_id: Option<String>, identity: Identity) -> Result<User, StoreError> {
    // Every identity created unlinked has one; only linked ones may lack it.
    let anon_id = anon_id.ok_or(StoreError::Corrupt {
        what: "identities.anon_id",
        value: "NULL".to_owned(),
    })?;
    let user = User {
        external_id: anon_id,
        ..User::default()
    };
    with_identity(user, None, Some(identity))
}

/// Completes a user with what their identity on the page says.
fn with_identity(
    mut user: User,
    imported_ms: Option<i64>,
    identity: Option<Identity>,
) -> Result<User, StoreError> {
    let Some(identity) = identity else {
        user.last_inbound_at = from_opt_ms(imported_ms, "users.last_inbound_at_ms")?;
        return Ok(user);
    };
    let last_inbound_ms = imported_ms.max(identity.last_inbound_ms);
    user.last_inbound_at = from_opt_ms(last_inbound_ms, "identities.last_inbound_at_ms")?;
    user.messenger_id = Some(identity.psid);
    user.attributes.insert(
        OPTED_OUT_ATTRIBUTE.to_owned(),
        identity.opted_out.to_string(),
    );
    if identity.opted_out
        && let Some(at) = from_opt_ms(identity.opted_out_at_ms, "identities.opted_out_at_ms")?
    {
        let at = at.format(&Rfc3339).map_err(|_| StoreError::Corrupt {
            what: "identities.opted_out_at_ms",
            value: at.unix_timestamp().to_string(),
        })?;
        user.attributes
            .insert(OPTED_OUT_AT_ATTRIBUTE.to_owned(), at);
    }
    Ok(user)
}
