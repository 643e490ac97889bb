//! The store on both databases: every case is one async fn run twice by `both_backends!`, on a
//! fresh SQLite file and in a fresh PostgreSQL schema (dropped afterwards). PostgreSQL comes from
//! `TEST_POSTGRES_URL` (default: the `herald` role `scripts/services.sh postgres` creates); when it
//! is unreachable the case fails under `CI` and prints `skipping: no postgres` otherwise.
//! This file holds the rig, users and identities; dedupe, migrations and runs are in
//! `store_runs.rs`, delivery records and receipts in `store_deliveries.rs`.

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::TryStreamExt;
use herald_core::{Secret, User};
use herald_store::{
    ANON_PREFIX, Backend, OPTED_OUT_AT_ATTRIBUTE, OPTED_OUT_ATTRIBUTE, Store, StoreError,
    UserRecord,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// What a case gets: a migrated store and the URL it was opened with.
pub(crate) struct Rig {
    pub(crate) store: Store,
    pub(crate) url: Secret,
}

/// Runs `case` against a new SQLite file.
pub(crate) async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Rig) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = Secret::new(format!(
        "sqlite://{}",
        dir.path().join("herald.db").display()
    ));
    let store = Store::connect(&url).await.expect("connect to sqlite");
    assert_eq!(store.backend(), Backend::Sqlite);
    case(Rig { store, url }).await;
}

/// Runs `case` in a new PostgreSQL schema, dropped afterwards even when the case panics.
pub(crate) async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Rig) -> Fut,
    Fut: Future<Output = ()>,
{
    crate::postgres::in_new_schema(|url| async move {
        let store = Store::connect(&url).await.expect("connect to postgres");
        assert_eq!(store.backend(), Backend::Postgres);
        case(Rig { store, url }).await;
    })
    .await;
}

pub(crate) use crate::postgres::postgres_admin;

/// For each `case` (an `async fn(Rig)` in scope), a module of the same name with two tests,
/// `sqlite` and `postgres`, running the same body.
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                $crate::tests::store::on_sqlite(super::$case).await;
            }
            #[tokio::test]
            async fn postgres() {
                $crate::tests::store::on_postgres(super::$case).await;
            }
        }
    )*};
}
pub(crate) use both_backends;

both_backends!(
    upsert_merges_attributes,
    stream_for_page,
    inbound_and_opt_out
);

pub(crate) const PAGE: &str = "1000000001";
const T0: OffsetDateTime = datetime!(2026-11-21 09:00 UTC);

pub(crate) fn record(id: &str, attributes: &[(&str, &str)]) -> UserRecord {
    let mut record = UserRecord::new(id);
    record.attributes = attributes
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    record
}

pub(crate) async fn users(store: &Store, page: &str) -> BTreeMap<String, User> {
    let list: Vec<User> = store
        .users_for_page(page)
        .try_collect()
        .await
        .expect("stream users");
    let count = list.len();
    let by_id: BTreeMap<String, User> = list
        .into_iter()
        .map(|user| (user.external_id.clone(), user))
        .collect();
    assert_eq!(by_id.len(), count, "the stream yielded a user twice");
    by_id
}

fn attrs(user: &User) -> Vec<(&str, &str)> {
    user.attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

async fn upsert_merges_attributes(rig: Rig) {
    let store = &rig.store;
    let mut u1 = record("u1", &[("first_name", "Ana"), ("country", "BR")]);
    u1.messenger_id = Some(" 111 ".into());
    u1.last_inbound_at = Some(T0 + time::Duration::hours(1));
    let written = store
        .upsert_users(&[u1, record("u2", &[("city", "Porto")])])
        .await
        .expect("upsert");
    assert_eq!(written, 2);

    // New keys overwrite, others stay; duplicates in one batch fold (later wins); an older
    // last_inbound_at does not move it back; a record without messenger_id keeps the old one.
    let mut again = record("u1", &[("country", "PT"), ("tier", "gold")]);
    again.last_inbound_at = Some(T0);
    let written = store
        .upsert_users(&[again, record("u1", &[("tier", "platinum")])])
        .await
        .expect("upsert again");
    assert_eq!(written, 1);

    // A blank external id refuses the whole batch.
    let refused = store
        .upsert_users(&[record("u3", &[]), record(" ", &[])])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid { .. })),
        "{refused:?}"
    );

    let users = users(store, PAGE).await;
    assert_eq!(users.keys().collect::<Vec<_>>(), ["u1", "u2"]);
    let u1 = &users["u1"];
    assert_eq!(
        attrs(u1),
        [
            ("country", "PT"),
            ("first_name", "Ana"),
            ("tier", "platinum")
        ]
    );
    assert_eq!(u1.messenger_id.as_deref(), Some("111"));
    assert_eq!(u1.last_inbound_at, Some(T0 + time::Duration::hours(1)));
    let u2 = &users["u2"];
    assert_eq!(attrs(u2), [("city", "Porto")]);
    assert_eq!(
        (u2.messenger_id.as_deref(), u2.last_inbound_at),
        (None, None)
    );
}

async fn stream_for_page(rig: Rig) {
    let store = &rig.store;
    // 2,400 users (more than two pages of the stream): even ones imported with a PSID on PAGE.
    let records: Vec<UserRecord> = (0..2400)
        .map(|i| {
            let mut record = record(&format!("u{i:05}"), &[("n", &i.to_string())]);
            if i % 2 == 0 {
                record.messenger_id = Some(format!("ps{i:05}"));
                record.page_id = Some(PAGE.to_owned());
            }
            record
        })
        .collect();
    for batch in records.chunks(1000) {
        store.upsert_users(batch).await.expect("import");
    }
    // Braze style: a PSID as an attribute, page unknown; then that PSID writes to PAGE.
    let mut braze = record("braze1", &[]);
    braze.messenger_id = Some("777".into());
    store.upsert_users(&[braze]).await.expect("braze user");
    store
        .record_inbound(PAGE, "777", T0, None)
        .await
        .expect("inbound 777");
    // Inbound, opt-out, a stranger (no ref), and an identity on another page.
    store
        .record_inbound(PAGE, "ps00002", T0, None)
        .await
        .expect("inbound");
    store
        .set_opt_out(PAGE, "ps00004", true, T0)
        .await
        .expect("opt out");
    store
        .record_inbound(PAGE, "9001", T0, None)
        .await
        .expect("stranger");
    store
        .record_inbound("2000000002", "x6", T0, Some("u00006"))
        .await
        .expect("other page");
    // u00008 writes from a second PSID: the one that wrote last is the one to use.
    let later = T0 + time::Duration::hours(1);
    store
        .record_inbound(PAGE, "alt8", later, Some("u00008"))
        .await
        .expect("second psid");

    let users = users(store, PAGE).await;
    assert_eq!(users.len(), 2400 + 2, "users, braze1 and the stranger");
    let u = |id: &str| &users[id];
    assert_eq!(u("u00000").messenger_id.as_deref(), Some("ps00000"));
    assert_eq!(u("u00000").attributes[OPTED_OUT_ATTRIBUTE], "false");
    assert_eq!(u("u00000").last_inbound_at, None);
    assert_eq!(u("u00001").messenger_id, None);
    assert_eq!(attrs(u("u00001")), [("n", "1")]);
    assert_eq!(u("u00002").last_inbound_at, Some(T0));
    assert_eq!(u("u00004").attributes[OPTED_OUT_ATTRIBUTE], "true");
    assert_eq!(
        u("u00004").attributes[OPTED_OUT_AT_ATTRIBUTE],
        "2026-11-21T09:00:00Z"
    );
    assert_eq!(u("u00006").messenger_id.as_deref(), Some("ps00006"));
    assert_eq!(u("u00008").messenger_id.as_deref(), Some("alt8"));
    assert_eq!(u("u00008").last_inbound_at, Some(later));
    assert_eq!(u("braze1").messenger_id.as_deref(), Some("777"));
    assert_eq!(
        u("braze1").last_inbound_at,
        Some(T0),
        "window known via the PSID"
    );
    let strangers: Vec<&User> = users
        .values()
        .filter(|user| user.external_id.starts_with(ANON_PREFIX))
        .collect();
    assert_eq!(strangers.len(), 1, "777 is braze1, not a stranger");
    assert_eq!(strangers[0].messenger_id.as_deref(), Some("9001"));
    assert_eq!(strangers[0].last_inbound_at, Some(T0));
    assert!(!strangers[0].external_id.contains("9001"));

    // Order: users by external_id, then strangers.
    let order: Vec<String> = store
        .users_for_page(PAGE)
        .map_ok(|user| user.external_id)
        .try_collect()
        .await
        .expect("stream");
    let (named, anonymous) = order.split_at(2401);
    assert!(
        named.windows(2).all(|w| w[0] < w[1]),
        "sorted by external_id"
    );
    assert!(anonymous[0].starts_with(ANON_PREFIX));

    // On the other page: u00006's PSID there; others fall back to their messenger_id attribute.
    let other = self::users(store, "2000000002").await;
    assert_eq!(other["u00006"].messenger_id.as_deref(), Some("x6"));
    assert_eq!(other["u00008"].messenger_id.as_deref(), Some("ps00008"));
    assert!(!other["u00008"].attributes.contains_key(OPTED_OUT_ATTRIBUTE));

    assert!(
        store
            .is_opted_out(PAGE, "ps00004")
            .await
            .expect("opted out")
    );
    assert!(
        !store
            .is_opted_out(PAGE, "ps00002")
            .await
            .expect("not opted out")
    );
    assert!(!store.is_opted_out(PAGE, "unknown").await.expect("unknown"));
}

async fn inbound_and_opt_out(rig: Rig) {
    let store = &rig.store;
    let (t1, t2, t3) = (
        T0,
        T0 + time::Duration::hours(1),
        T0 + time::Duration::hours(2),
    );
    store
        .record_inbound(PAGE, "42", t2, None)
        .await
        .expect("inbound");
    // An older event with a ref: links, and last_inbound_at stays at the newer time.
    store
        .record_inbound(PAGE, "42", t1, Some("ext1"))
        .await
        .expect("ref");
    let users = users(store, PAGE).await;
    assert_eq!(
        users.keys().collect::<Vec<_>>(),
        ["ext1"],
        "the ref created the user"
    );
    assert_eq!(users["ext1"].messenger_id.as_deref(), Some("42"));
    assert_eq!(users["ext1"].last_inbound_at, Some(t2));
    // A newer event without a ref moves the time and keeps the link; twice changes nothing.
    for _ in 0..2 {
        store
            .record_inbound(PAGE, "42", t3, None)
            .await
            .expect("newer");
    }
    let users = self::users(store, PAGE).await;
    assert_eq!(users["ext1"].last_inbound_at, Some(t3));
    // A later ref relinks.
    store
        .record_inbound(PAGE, "42", t3, Some("ext2"))
        .await
        .expect("relink");
    let users = self::users(store, PAGE).await;
    assert_eq!(users["ext2"].messenger_id.as_deref(), Some("42"));
    assert_eq!(users["ext1"].messenger_id, None);

    // Opt changes apply in time order, whatever order they arrive in; duplicates are no-ops.
    let check = |opted_out: bool, at: OffsetDateTime, applied: bool| async move {
        let done = store
            .set_opt_out(PAGE, "42", opted_out, at)
            .await
            .expect("opt");
        assert_eq!(done, applied, "set_opt_out({opted_out}, {at})");
    };
    check(true, t2, true).await;
    check(true, t2, false).await;
    check(false, t1, false).await;
    assert!(store.is_opted_out(PAGE, "42").await.expect("read"));
    check(false, t3, true).await;
    assert!(!store.is_opted_out(PAGE, "42").await.expect("read"));
    // An opt-out from a PSID never seen creates it without opening the window.
    assert!(
        store
            .set_opt_out(PAGE, "43", true, t1)
            .await
            .expect("new psid")
    );
    let users = self::users(store, PAGE).await;
    let stranger = users
        .values()
        .find(|user| user.messenger_id.as_deref() == Some("43"))
        .expect("psid 43 is streamed");
    assert_eq!(stranger.last_inbound_at, None);
    assert_eq!(stranger.attributes[OPTED_OUT_ATTRIBUTE], "true");
}
