//! Triggered campaigns in the store, on both databases (see `store.rs` for the rig): the
//! trigger index follows puts and deletes, read by page (webhook actions) or event name; a fire recorded
//! twice is one fire; a fire is claimed only once due; a claim holds for its lease and a lapsed
//! one is claimed again with the count that tells the dispatcher to have the job verified;
//! settling adds to the day run; a deleted campaign is told from a live one;
//! `once_per` marks let a retry of the same event through and stop another one inside the
//! period; a PSID resolves to its linked user or its anonymous identity.

use herald_core::clock::now_ms;
use herald_store::{NewFire, NewRun, SettledFire, Store, TriggerEntry};
use time::OffsetDateTime;

use super::store::{PAGE, Rig, both_backends, record};

both_backends!(
    the_index_follows_puts_and_deletes_by_page_and_event,
    fires_are_recorded_once_claimed_and_settled,
    once_per_lets_a_retry_through_and_stops_another_event,
    a_psid_resolves_to_its_user_or_its_anonymous_identity
);

const OTHER_PAGE: &str = "1000000002";

fn entry(campaign_id: &str, page_id: &str, kind: &str, key: &str) -> TriggerEntry {
    TriggerEntry {
        campaign_id: campaign_id.to_owned(),
        version: 0,
        page_id: page_id.to_owned(),
        kind: kind.to_owned(),
        key: key.to_owned(),
        delay_ms: 0,
    }
}

async fn put(store: &Store, id: &str, trigger: Option<TriggerEntry>) -> i64 {
    // The store saves a new version only for a changed document.
    let waits_for = trigger.as_ref().map(|t| format!("{} {}", t.kind, t.key));
    let document = format!("id = \"{id}\"\n# {waits_for:?}");
    store
        .put_campaign(id, &document, "toml", now_ms(), trigger)
        .await
        .expect("put")
}

async fn the_index_follows_puts_and_deletes_by_page_and_event(rig: Rig) {
    let store = &rig.store;
    put(
        store,
        "welcome",
        Some(entry("welcome", PAGE, "postback", "GET_STARTED")),
    )
    .await;
    put(store, "menu", Some(entry("menu", PAGE, "keyword", "menu"))).await;
    put(
        store,
        "elsewhere",
        Some(entry("elsewhere", OTHER_PAGE, "postback", "GET_STARTED")),
    )
    .await;
    let delayed = TriggerEntry {
        delay_ms: 3_600_000,
        ..entry("shipped", OTHER_PAGE, "event", "order_shipped")
    };
    put(store, "shipped", Some(delayed)).await;
    put(store, "plain", None).await;
    let ids = |entries: Vec<TriggerEntry>| {
        let mut ids: Vec<String> = entries.into_iter().map(|e| e.campaign_id).collect();
        ids.sort();
        ids
    };
    let mut batch = store.batch().await.expect("batch");
    let found = batch.triggers_on_pages(&[PAGE]).await.expect("read");
    assert_eq!(ids(found), ["menu", "welcome"]);
    let found = batch
        .triggers_on_pages(&[PAGE, OTHER_PAGE])
        .await
        .expect("read");
    assert_eq!(ids(found), ["elsewhere", "menu", "shipped", "welcome"]);
    let found = batch.triggers_on_pages(&["1"]).await.expect("read");
    assert!(found.is_empty(), "{found:?}");
    drop(batch);
    let events = store
        .triggers_for("event", &["order_shipped", "other"])
        .await
        .expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].page_id.as_str(),
            events[0].version,
            events[0].delay_ms
        ),
        (OTHER_PAGE, 1, 3_600_000)
    );
    // A new version moves the index; without a trigger, or deleted, the campaign is gone from it.
    let version = put(
        store,
        "shipped",
        Some(entry("shipped", OTHER_PAGE, "event", "shipped")),
    )
    .await;
    assert_eq!(version, 2);
    assert!(
        store
            .triggers_for("event", &["order_shipped"])
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        store
            .triggers_for("event", &["shipped"])
            .await
            .expect("read")[0]
            .version,
        2
    );
    put(store, "welcome", None).await;
    assert!(store.delete_campaign("menu").await.expect("delete"));
    let mut batch = store.batch().await.expect("batch");
    let found = batch.triggers_on_pages(&[PAGE]).await.expect("read");
    assert!(found.is_empty(), "{found:?}");
    drop(batch);
    let deleted = store
        .deleted_campaigns(&["menu", "shipped", "never"])
        .await
        .expect("deleted");
    assert_eq!(deleted, ["menu"]);
    put(store, "menu", Some(entry("menu", PAGE, "keyword", "menus"))).await;
    assert!(
        store
            .deleted_campaigns(&["menu"])
            .await
            .expect("deleted")
            .is_empty(),
        "put again, menu lives"
    );
}

fn fire(event_key: &str, received_at_ms: i64) -> NewFire {
    NewFire {
        campaign_id: "welcome".to_owned(),
        event_key: event_key.to_owned(),
        version: 1,
        page_id: PAGE.to_owned(),
        external_id: None,
        psid: Some("601".to_owned()),
        properties: Some(r#"{"a":"1"}"#.to_owned()),
        received_at_ms,
        due_at_ms: received_at_ms,
    }
}

async fn fires_are_recorded_once_claimed_and_settled(rig: Rig) {
    let store = &rig.store;
    let now = now_ms();
    assert_eq!(
        store
            .record_fires(&[fire("postback:m1", now)])
            .await
            .expect("record"),
        1
    );
    let again = [fire("postback:m1", now), fire("postback:m2", now + 1)];
    assert_eq!(
        store.record_fires(&again).await.expect("record"),
        1,
        "m1 was new again"
    );
    // A fire an hour from due waits; it is counted as waiting, not as due.
    let later = NewFire {
        due_at_ms: now + 3_600_000,
        ..fire("postback:later", now)
    };
    store.record_fires(&[later]).await.expect("record");
    let pending = store.pending_fires().await.expect("pending");
    assert_eq!((pending.due, pending.waiting), (2, 1), "{pending:?}");
    assert_eq!(pending.due_since_ms, Some(now));

    let claimed = store.claim_fires(60_000, 1).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].fire,
        fire("postback:m1", now),
        "oldest first, as recorded"
    );
    assert_eq!(claimed[0].claims, 1);
    // m1 is held; m2 is next. A lease already over (a serve that died) frees m2 at once.
    let claimed = store.claim_fires(-1, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].fire.event_key, "postback:m2");
    let claimed = store.claim_fires(60_000, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1, "the lapsed claim on m2 is claimed again");
    assert_eq!(
        (claimed[0].fire.event_key.as_str(), claimed[0].claims),
        ("postback:m2", 2)
    );
    assert!(claimed[0].first_claimed_at_ms <= now_ms());
    assert!(
        store
            .claim_fires(60_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "m1 and m2 are held, the later fire is not due"
    );

    let run_id = "welcome@2026-12-07";
    let run = NewRun {
        run_id: run_id.to_owned(),
        campaign_id: "welcome".to_owned(),
        document: "{}".to_owned(),
        segment: "trigger: postback \"GET_STARTED\"".to_owned(),
        started_at: OffsetDateTime::now_utc(),
    };
    store.create_run(&run).await.expect("run");
    let settled = [
        SettledFire {
            campaign_id: "welcome".to_owned(),
            event_key: "postback:m1".to_owned(),
            state: "published",
            reason: None,
            run_id: Some(run_id.to_owned()),
            job_id: Some(format!("{run_id}:u1:aa")),
        },
        SettledFire {
            campaign_id: "welcome".to_owned(),
            event_key: "postback:m2".to_owned(),
            state: "skipped",
            reason: Some("blank_psid".to_owned()),
            run_id: Some(run_id.to_owned()),
            job_id: Some(format!("{run_id}:u1:bb")),
        },
    ];
    store.settle_fires(&settled).await.expect("settle");
    // Settling twice (a retry after a lost answer) changes nothing: only pending fires settle.
    store.settle_fires(&settled).await.expect("settle again");
    let record = store.load_run(run_id).await.expect("load").expect("run");
    assert_eq!(record.progress.published, 1, "{:?}", record.progress);
    assert_eq!(record.progress.skipped.get("blank_psid"), Some(&1));
    let due = {
        let mut batch = store.batch().await.expect("batch");
        batch
            .fire_due(&[&format!("{run_id}:u1:aa"), "other:job"])
            .await
            .expect("read")
    };
    assert_eq!(due, [(format!("{run_id}:u1:aa"), now)]);
    let days = store
        .fire_days("welcome", now - 86_400_000)
        .await
        .expect("days");
    assert_eq!(days.len(), 1);
    let day = &days[0].1;
    assert_eq!((day.fired, day.published, day.pending), (3, 1, 1));
    assert_eq!(day.skipped.get("blank_psid"), Some(&1));
    let pending = store.pending_fires().await.expect("pending");
    assert_eq!(
        (pending.due, pending.due_since_ms, pending.waiting),
        (0, None, 1)
    );
    // Pruning forgets settled fires received before the cutoff, never a pending one.
    store
        .record_fires(&[fire("postback:m3", now)])
        .await
        .expect("record");
    assert_eq!(
        store.prune_fires(now).await.expect("prune"),
        0,
        "none before"
    );
    assert_eq!(
        store.prune_fires(now + 1).await.expect("prune"),
        1,
        "m1 only"
    );
    assert_eq!(
        store.prune_fires(now + 2).await.expect("prune"),
        1,
        "m2; m3 and the later fire are pending"
    );
    assert_eq!(store.pending_fires().await.expect("pending").due, 1);
}

async fn once_per_lets_a_retry_through_and_stops_another_event(rig: Rig) {
    let store = &rig.store;
    let hour_ago = Some(now_ms() - 3_600_000);
    let mark = |campaign: &'static str, event: &'static str, since: Option<i64>| async move {
        store
            .mark_trigger_send(campaign, "u1", event, since)
            .await
            .expect("mark")
    };
    assert!(mark("weekly", "e1", hour_ago).await, "the first send");
    assert!(
        mark("weekly", "e1", hour_ago).await,
        "a retry of the same event"
    );
    assert!(
        !mark("weekly", "e2", hour_ago).await,
        "another event inside the period"
    );
    // The period has passed (the last send is before `since`).
    assert!(mark("weekly", "e2", Some(now_ms() + 1_000)).await);
    assert!(
        !mark("weekly", "e3", hour_ago).await,
        "e2 is now the last send"
    );
    // Once ever.
    assert!(mark("once", "e1", None).await);
    assert!(!mark("once", "e2", None).await);
    assert!(
        mark("once", "e1", None).await,
        "a retry of the event that sent"
    );
}

async fn a_psid_resolves_to_its_user_or_its_anonymous_identity(rig: Rig) {
    let store = &rig.store;
    let mut ana = record("u1", &[("first_name", "Ana")]);
    ana.messenger_id = Some("601".to_owned());
    ana.page_id = Some(PAGE.to_owned());
    store.upsert_users(&[ana]).await.expect("import");
    let at = OffsetDateTime::now_utc();
    store
        .record_inbound(PAGE, "601", at, None)
        .await
        .expect("inbound");
    store
        .record_inbound(PAGE, "699", at, None)
        .await
        .expect("inbound");
    let linked = store
        .user_by_psid(PAGE, "601")
        .await
        .expect("read")
        .expect("known");
    assert_eq!(linked.external_id, "u1");
    assert_eq!(
        linked.attributes.get("first_name").map(String::as_str),
        Some("Ana")
    );
    assert_eq!(linked.messenger_id.as_deref(), Some("601"));
    assert!(linked.last_inbound_at.is_some());
    let anonymous = store
        .user_by_psid(PAGE, "699")
        .await
        .expect("read")
        .expect("known");
    assert!(
        anonymous.external_id.starts_with(herald_store::ANON_PREFIX),
        "{anonymous:?}"
    );
    assert_eq!(anonymous.messenger_id.as_deref(), Some("699"));
    assert!(
        store
            .user_by_psid(PAGE, "600")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .user_by_psid(OTHER_PAGE, "601")
            .await
            .expect("read")
            .is_none()
    );
}
