//! Refs through the real webhook and ingest, on both databases: only a ref Herald signed links
//! a PSID to a user. Unsigned, forged and expired refs still record the person's action (their
//! PSID and window) but link nothing; a ref never moves a link an import made; and links follow
//! the events' own times, not the order they arrive in. Every outcome is counted.

use base64::Engine as _;
use serde_json::json;

use super::{PAGE, Pipeline, entry, message, message_with_ref, ref_keys, signed, t1};
use crate::tests::store::{Rig, both_backends, users};

both_backends!(
    only_signed_refs_link,
    a_ref_never_moves_an_import_and_the_later_event_wins,
);

async fn only_signed_refs_link(rig: Rig) {
    let Some(pipeline) = Pipeline::new("test-ingest-refs", rig.store.clone()).await else {
        return;
    };
    // The victim's id in an envelope signed by someone else, in a real ref with its id swapped,
    // plain, and a real one that expired before the person used it.
    let foreign = herald_core::signed_ref::RefKeys::parse(&herald_core::Secret::new(
        "t1=not-our-secret-0123456789abcdefghijkl",
    ))
    .expect("keys")
    .sign(PAGE, "victim", super::at(t1()) + time::Duration::days(1))
    .expect("sign");
    let mut swapped: Vec<String> = signed("attacker").split('.').map(str::to_owned).collect();
    swapped[3] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("victim");
    let swapped = swapped.join(".");
    let expired = ref_keys()
        .sign(PAGE, "victim", super::at(t1()) - time::Duration::hours(1))
        .expect("sign");
    let items = vec![
        message_with_ref("401", t1(), "m_401", Some(&foreign)),
        message_with_ref("402", t1() + 1, "m_402", Some(&swapped)),
        message_with_ref("403", t1() + 2, "m_403", Some("victim")),
        message_with_ref("404", t1() + 3, "m_404", Some(&expired)),
        message("405", t1() + 4, "m_405", Some("friend")),
    ];
    pipeline.post(json!([entry(items)])).await;
    pipeline.ingested(1).await;

    let users = users(&pipeline.store, PAGE).await;
    assert!(
        !users.contains_key("victim"),
        "no forged ref linked: {users:?}"
    );
    assert_eq!(users["friend"].messenger_id.as_deref(), Some("405"));
    // The refused ones are still people who wrote: their PSIDs and windows are kept.
    let by_psid = pipeline.by_psid().await;
    for (psid, at) in [
        ("401", t1()),
        ("402", t1() + 1),
        ("403", t1() + 2),
        ("404", t1() + 3),
    ] {
        let user = by_psid
            .get(psid)
            .unwrap_or_else(|| panic!("{psid} missing"));
        assert!(
            user.external_id.starts_with(herald_store::ANON_PREFIX),
            "{user:?}"
        );
        assert_eq!(user.last_inbound_at, Some(super::at(at)), "{psid}");
    }
    let refs = |outcome: &str| counted(&pipeline, outcome);
    assert_eq!(
        [
            refs("bad_signature"),
            refs("unsigned"),
            refs("expired"),
            refs("linked")
        ],
        [2, 1, 1, 1]
    );
    pipeline.stop().await;
}

async fn a_ref_never_moves_an_import_and_the_later_event_wins(rig: Rig) {
    let Some(pipeline) = Pipeline::new("test-ingest-ref-order", rig.store.clone()).await else {
        return;
    };
    // The customer's own record ties PSID 501 to `owner`.
    let mut record = herald_store::UserRecord::new("owner");
    record.messenger_id = Some("501".to_owned());
    record.page_id = Some(PAGE.to_owned());
    pipeline
        .store
        .upsert_users(&[record])
        .await
        .expect("import");
    // A later event with a ref for someone else arrives first; the earlier one after it.
    let later = json!([entry(vec![
        message("501", t1() + 60_000, "m_501_b", Some("other")),
        message("502", t1() + 60_000, "m_502_b", Some("newer")),
    ])]);
    let earlier = json!([entry(vec![message("502", t1(), "m_502_a", Some("older"))])]);
    pipeline.post(later).await;
    pipeline.ingested(1).await;
    pipeline.post(earlier).await;
    pipeline.ingested(2).await;

    let by_psid = pipeline.by_psid().await;
    assert_eq!(by_psid["501"].external_id, "owner", "the import stands");
    assert_eq!(
        by_psid["502"].external_id, "newer",
        "the later event's ref stands"
    );
    let refs = |outcome: &str| counted(&pipeline, outcome);
    assert_eq!(
        [refs("linked"), refs("kept_import"), refs("kept_newer")],
        [1, 1, 1]
    );
    pipeline.stop().await;
}

/// `herald_ingest_refs_total{outcome}` so far.
fn counted(pipeline: &Pipeline, outcome: &str) -> u64 {
    pipeline
        .metrics
        .ingest_refs
        .with_label_values(&[outcome])
        .get()
}
