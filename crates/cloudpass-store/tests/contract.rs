//! The storage contract: every behaviour the token service relies on, run against both
//! backends. Each test is written once as an `async fn(AnyStore)` and instantiated for
//! SQLite (a fresh file) and PostgreSQL (a fresh schema on the local server); the PostgreSQL
//! variants fail, never skip, when the server is unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;

use cloudpass_store::testing::{fresh_postgres, fresh_sqlite};
use cloudpass_store::*;

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(AnyStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let fresh = fresh_sqlite().await.unwrap();
    test(fresh.store.clone()).await;
    fresh.cleanup().await;
}

async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(AnyStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let fresh = fresh_postgres().await.unwrap();
    test(fresh.store.clone()).await;
    fresh.cleanup().await;
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::on_sqlite(super::$name).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::on_postgres(super::$name).await; })*
        }
    };
}

contract!(
    migrations_are_idempotent,
    keys_are_written_once,
    participants_round_trip,
    tokens_round_trip_and_vault_entry,
    one_live_token_per_card_and_device,
    one_default_per_device_and_atomic_switch,
    stale_versions_conflict_and_nothing_is_half_written,
    device_guard_serializes_changes,
    outbox_delivers_in_order_per_token,
    outbox_queues_keep_their_head_while_written_and_delivered,
    idempotency_keys,
    stale_idempotency_claims_are_taken_over_once,
    concurrent_loads_leave_one_live_token,
    journal_records_once_and_answers,
    saf_queues_once_and_retries_until_acknowledged,
    offline_spends_clear_once,
    atcs_are_accepted_once_and_only_upwards,
    push_receipts_spend_once_and_declines_are_counted,
    gateway_orders_are_unique_and_written_by_version,
    a_return_and_its_consume_are_written_together_or_not_at_all,
    gateway_merchants_are_registered_once_and_updated,
    wallet_accounts_are_unique_and_sessions_expire,
    wallet_cards_are_bound_once_per_account,
    wallet_devices_are_bounded_and_signed_out_once,
    console_lists_are_newest_first_and_counted,
    campaign_spending_is_summed_from_its_orders,
    card_tokens_are_opened_once_and_deleted_once,
    terminal_keys_are_kept_per_terminal_and_replaced,
    backlogs_count_what_is_pending_and_its_oldest,
);

const NOW: i64 = 1_764_000_000_000;

async fn seed(store: &AnyStore) {
    store
        .insert_issuer(
            &IssuerRow {
                id: "iss_cmb".into(),
                name: "China Merchants Bank".into(),
                api_url: "http://127.0.0.1:9/issuer".into(),
                api_key_hash: vec![1; 32],
                webhook_url: Some("http://127.0.0.1:9/issuer".into()),
                webhook_secret: Some(vec![9; 40]),
                created_at: NOW,
            },
            &[
                BinRangeRow {
                    prefix: "622609".into(),
                    kind: "card".into(),
                    issuer_id: "iss_cmb".into(),
                    product: "debit".into(),
                    funding: "debit".into(),
                },
                BinRangeRow {
                    prefix: "623118".into(),
                    kind: "token".into(),
                    issuer_id: "iss_cmb".into(),
                    product: "debit".into(),
                    funding: "debit".into(),
                },
            ],
            &[ProductRow {
                issuer_id: "iss_cmb".into(),
                product: "debit".into(),
                currency: 156,
                contactless_no_pin_limit: 100_000,
                online_no_pin_limit: 50_000,
                updated_at: NOW,
                version: 0,
            }],
        )
        .await
        .unwrap();
    store
        .insert_token_requestor(&TokenRequestorRow {
            id: "40010030273".into(),
            name: "Apple Pay".into(),
            wallet: "apple".into(),
            api_key_hash: vec![2; 32],
            webhook_url: None,
            webhook_secret: None,
            created_at: NOW,
        })
        .await
        .unwrap();
    store
        .insert_user(&UserRow {
            id: "usr_1".into(),
            token_requestor_id: "40010030273".into(),
            account_id: "alice".into(),
            created_at: NOW,
        })
        .await
        .unwrap();
    for device in ["dev_1", "dev_2"] {
        store.insert_device(&device_row(device)).await.unwrap();
    }
    let mut changeset = Changeset::default();
    changeset.card_inserts.push(card_row("card_1", 1));
    changeset.card_inserts.push(card_row("card_2", 2));
    store.commit(&changeset).await.unwrap();
}

fn device_row(id: &str) -> DeviceRow {
    DeviceRow {
        id: id.into(),
        token_requestor_id: "40010030273".into(),
        external_id: format!("ext-{id}"),
        kind: "handset_se".into(),
        brand: "apple".into(),
        state: "active".into(),
        user_id: Some("usr_1".into()),
        unlock_set: true,
        public_key: vec![7; 32],
        created_at: NOW,
        updated_at: NOW,
        version: 0,
    }
}

fn card_row(id: &str, n: u8) -> CardRow {
    CardRow {
        id: id.into(),
        issuer_id: "iss_cmb".into(),
        pan_fingerprint: vec![n; 32],
        pan_encrypted: vec![0xEE; 44],
        pan_bin: "622609".into(),
        pan_last4: format!("004{n}"),
        expiry: "2912".into(),
        funding: "debit".into(),
        product: "debit".into(),
        status: "active".into(),
        reserved_phone_masked: Some("181****0000".into()),
        par: format!("U001{:025}", n),
        created_at: NOW,
        updated_at: NOW,
        version: 0,
    }
}

fn token_row(id: &str, number: &str, card: &str, device: &str, is_default: bool) -> TokenRow {
    TokenRow {
        id: id.into(),
        token_number: number.into(),
        card_id: card.into(),
        device_id: device.into(),
        token_requestor_id: "40010030273".into(),
        user_id: "usr_1".into(),
        expiry: "2911".into(),
        status: "active".into(),
        activated: true,
        deleted: false,
        holds: 0,
        suspend_reason: None,
        status_reason: None,
        status_channel: "network".into(),
        is_default,
        domain_nfc: true,
        domain_in_app: true,
        ecash_enabled: false,
        ecash_balance: 0,
        pan_sequence: 0,
        atc_issued_until: 0,
        assurance_level: "03".into(),
        metadata: "{}".into(),
        provisioned_seq: NOW,
        created_at: NOW,
        updated_at: NOW,
        version: 0,
    }
}

fn insert(token: TokenRow) -> Changeset {
    Changeset {
        token_inserts: vec![token],
        ..Changeset::default()
    }
}

async fn migrations_are_idempotent(store: AnyStore) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
}

async fn keys_are_written_once(store: AnyStore) {
    assert_eq!(store.key("dek").await.unwrap(), None);
    assert_eq!(
        store
            .insert_key_if_absent("dek", "first", NOW)
            .await
            .unwrap(),
        "first"
    );
    assert_eq!(
        store
            .insert_key_if_absent("dek", "second", NOW)
            .await
            .unwrap(),
        "first"
    );
    assert_eq!(store.key("dek").await.unwrap().as_deref(), Some("first"));
}

async fn participants_round_trip(store: AnyStore) {
    seed(&store).await;
    let issuer = store.issuer("iss_cmb").await.unwrap().unwrap();
    assert_eq!(issuer.webhook_secret, Some(vec![9; 40]));
    assert_eq!(
        store.issuer_by_api_key(&[1; 32]).await.unwrap().unwrap().id,
        "iss_cmb"
    );
    assert!(store.issuer_by_api_key(&[3; 32]).await.unwrap().is_none());
    assert_eq!(store.issuers().await.unwrap().len(), 1);
    store
        .set_issuer_endpoints("iss_cmb", "http://127.0.0.1:1/new", None)
        .await
        .unwrap();
    let moved = store.issuer("iss_cmb").await.unwrap().unwrap();
    assert_eq!(
        (moved.api_url.as_str(), moved.webhook_url),
        ("http://127.0.0.1:1/new", None)
    );
    store
        .set_token_requestor_webhook("40010030273", Some("http://127.0.0.1:1/hook"))
        .await
        .unwrap();
    assert_eq!(
        store
            .token_requestor("40010030273")
            .await
            .unwrap()
            .unwrap()
            .webhook_url
            .as_deref(),
        Some("http://127.0.0.1:1/hook")
    );
    assert_eq!(store.bin_ranges().await.unwrap().len(), 2);
    assert_eq!(
        store
            .product("iss_cmb", "debit")
            .await
            .unwrap()
            .unwrap()
            .contactless_no_pin_limit,
        100_000
    );
    assert_eq!(
        store
            .token_requestor_by_api_key(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .name,
        "Apple Pay"
    );
    assert_eq!(store.token_requestors().await.unwrap().len(), 1);
    assert_eq!(
        store
            .user_by_account("40010030273", "alice")
            .await
            .unwrap()
            .unwrap()
            .id,
        "usr_1"
    );
    let duplicate = store
        .insert_user(&UserRow {
            id: "usr_2".into(),
            token_requestor_id: "40010030273".into(),
            account_id: "alice".into(),
            created_at: NOW,
        })
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Duplicate(Duplicate::User))),
        "{duplicate:?}"
    );
    let device = store
        .device_by_external_id("40010030273", "ext-dev_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(device, device_row("dev_1"));
    assert!(matches!(
        store
            .insert_device(&DeviceRow {
                id: "dev_9".into(),
                ..device_row("dev_1")
            })
            .await,
        Err(StoreError::Duplicate(Duplicate::Device))
    ));
    assert_eq!(
        store.card_by_fingerprint(&[1; 32]).await.unwrap().unwrap(),
        card_row("card_1", 1)
    );
    let mut changeset = Changeset::default();
    changeset.card_inserts.push(CardRow {
        id: "card_9".into(),
        par: "U001X".into(),
        ..card_row("card_1", 1)
    });
    assert!(matches!(
        store.commit(&changeset).await,
        Err(StoreError::Duplicate(Duplicate::CardFingerprint))
    ));
}

async fn tokens_round_trip_and_vault_entry(store: AnyStore) {
    seed(&store).await;
    let token = token_row("tok_1", "6231180000000008", "card_1", "dev_1", true);
    let mut changeset = insert(token.clone());
    changeset.history.push(HistoryRow {
        token_id: "tok_1".into(),
        at: NOW,
        event: "provision".into(),
        channel: "network".into(),
        from_status: None,
        to_status: "active".into(),
        reason: None,
        detail: Some("green".into()),
    });
    store.commit(&changeset).await.unwrap();
    assert_eq!(store.token("tok_1").await.unwrap().unwrap(), token);
    assert_eq!(
        store
            .token_by_number("6231180000000008")
            .await
            .unwrap()
            .unwrap(),
        token
    );
    assert_eq!(
        store.tokens_by_device("dev_1").await.unwrap(),
        vec![token.clone()]
    );
    assert_eq!(
        store.tokens_by_card("card_1").await.unwrap(),
        vec![token.clone()]
    );
    assert_eq!(
        store
            .live_tokens_by_product("iss_cmb", "debit")
            .await
            .unwrap(),
        vec![token.clone()]
    );
    let entry = store
        .vault_entry("6231180000000008")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        entry,
        VaultEntry {
            token,
            card: card_row("card_1", 1),
            device_kind: "handset_se".into(),
            device_state: "active".into(),
            wallet: "apple".into(),
            limits: Some(NoPinLimits {
                currency: 156,
                contactless: 100_000,
                online: 50_000,
            }),
        }
    );
    assert!(
        store
            .vault_entry("6231180000000016")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.history("tok_1").await.unwrap().len(), 1);
}

async fn one_live_token_per_card_and_device(store: AnyStore) {
    seed(&store).await;
    store
        .commit(&insert(token_row(
            "tok_1",
            "6231180000000008",
            "card_1",
            "dev_1",
            true,
        )))
        .await
        .unwrap();
    let second = store
        .commit(&insert(token_row(
            "tok_2",
            "6231180000000016",
            "card_1",
            "dev_1",
            false,
        )))
        .await;
    assert!(
        matches!(
            second,
            Err(StoreError::Duplicate(Duplicate::LiveTokenForCardOnDevice))
        ),
        "{second:?}"
    );
    // Same card on another device, another card on the same device: both fine.
    store
        .commit(&insert(token_row(
            "tok_3",
            "6231180000000024",
            "card_1",
            "dev_2",
            true,
        )))
        .await
        .unwrap();
    store
        .commit(&insert(token_row(
            "tok_4",
            "6231180000000032",
            "card_2",
            "dev_1",
            false,
        )))
        .await
        .unwrap();
    // Once the first is deleted, the card may be loaded on that device again.
    let mut deleted = store.token("tok_1").await.unwrap().unwrap();
    deleted.deleted = true;
    deleted.status = "deleted".into();
    deleted.is_default = false;
    store
        .commit(&Changeset {
            token_updates: vec![deleted],
            ..Changeset::default()
        })
        .await
        .unwrap();
    store
        .commit(&insert(token_row(
            "tok_2",
            "6231180000000016",
            "card_1",
            "dev_1",
            false,
        )))
        .await
        .unwrap();
}

async fn one_default_per_device_and_atomic_switch(store: AnyStore) {
    seed(&store).await;
    store
        .commit(&insert(token_row(
            "tok_1",
            "6231180000000008",
            "card_1",
            "dev_1",
            true,
        )))
        .await
        .unwrap();
    let second_default = store
        .commit(&insert(token_row(
            "tok_2",
            "6231180000000016",
            "card_2",
            "dev_1",
            true,
        )))
        .await;
    assert!(
        matches!(
            second_default,
            Err(StoreError::Duplicate(Duplicate::DefaultOnDevice))
        ),
        "{second_default:?}"
    );
    store
        .commit(&insert(token_row(
            "tok_2",
            "6231180000000016",
            "card_2",
            "dev_1",
            false,
        )))
        .await
        .unwrap();
    // Switch the default in one changeset; the order of the rows does not matter.
    let mut new_default = store.token("tok_2").await.unwrap().unwrap();
    new_default.is_default = true;
    let mut old_default = store.token("tok_1").await.unwrap().unwrap();
    old_default.is_default = false;
    store
        .commit(&Changeset {
            token_updates: vec![new_default, old_default],
            ..Changeset::default()
        })
        .await
        .unwrap();
    let defaults: Vec<String> = store
        .tokens_by_device("dev_1")
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.is_default)
        .map(|t| t.id)
        .collect();
    assert_eq!(defaults, vec!["tok_2".to_owned()]);
    // A deleted token can never be the default (check constraint).
    let mut bad = store.token("tok_2").await.unwrap().unwrap();
    bad.deleted = true;
    bad.status = "deleted".into();
    assert!(
        store
            .commit(&Changeset {
                token_updates: vec![bad],
                ..Changeset::default()
            })
            .await
            .is_err()
    );
}

async fn stale_versions_conflict_and_nothing_is_half_written(store: AnyStore) {
    seed(&store).await;
    store
        .commit(&insert(token_row(
            "tok_1",
            "6231180000000008",
            "card_1",
            "dev_1",
            true,
        )))
        .await
        .unwrap();
    let read = store.token("tok_1").await.unwrap().unwrap();
    let mut first = read.clone();
    first.status_reason = Some("first".into());
    store
        .commit(&Changeset {
            token_updates: vec![first],
            ..Changeset::default()
        })
        .await
        .unwrap();
    // A second writer that read the same version loses, and none of its other rows land.
    let mut second = read.clone();
    second.status_reason = Some("second".into());
    let changeset = Changeset {
        token_updates: vec![second],
        history: vec![HistoryRow {
            token_id: "tok_1".into(),
            at: NOW,
            event: "suspend".into(),
            channel: "wallet".into(),
            from_status: Some("active".into()),
            to_status: "suspended".into(),
            reason: None,
            detail: None,
        }],
        outbox: vec![NewOutboxEvent {
            event_id: "evt_lost".into(),
            subscriber_kind: "issuer".into(),
            subscriber_id: "iss_cmb".into(),
            token_id: "tok_1".into(),
            event_type: "TOKEN_STATUS_UPDATED".into(),
            payload: "{}".into(),
            created_at: NOW,
        }],
        ..Changeset::default()
    };
    assert!(matches!(
        store.commit(&changeset).await,
        Err(StoreError::Conflict)
    ));
    let stored = store.token("tok_1").await.unwrap().unwrap();
    assert_eq!(stored.status_reason.as_deref(), Some("first"));
    assert_eq!(stored.version, 1);
    assert!(store.history("tok_1").await.unwrap().is_empty());
    assert!(store.outbox_for_token("tok_1").await.unwrap().is_empty());
}

async fn device_guard_serializes_changes(store: AnyStore) {
    seed(&store).await;
    let device = store.device("dev_1").await.unwrap().unwrap();
    let guarded = |version| Changeset {
        device_guards: vec![("dev_1".into(), version)],
        ..Changeset::default()
    };
    store.commit(&guarded(device.version)).await.unwrap();
    assert!(matches!(
        store.commit(&guarded(device.version)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.device("dev_1").await.unwrap().unwrap().version,
        device.version + 1
    );
    let mut lost = store.device("dev_1").await.unwrap().unwrap();
    lost.state = "lost".into();
    store
        .commit(&Changeset {
            device_updates: vec![lost.clone()],
            ..Changeset::default()
        })
        .await
        .unwrap();
    assert_eq!(store.device("dev_1").await.unwrap().unwrap().state, "lost");
    assert!(matches!(
        store
            .commit(&Changeset {
                device_updates: vec![lost],
                ..Changeset::default()
            })
            .await,
        Err(StoreError::Conflict)
    ));
}

fn event(id: &str, token: &str, at: i64) -> NewOutboxEvent {
    NewOutboxEvent {
        event_id: id.into(),
        subscriber_kind: "token_requestor".into(),
        subscriber_id: "40010030273".into(),
        token_id: token.into(),
        event_type: "TOKEN_STATUS_UPDATED".into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
        created_at: at,
    }
}

/// Events written into two queues by four writers while a deliverer claims and delivers:
/// an event written just as the one before it is delivered must still become its queue's
/// head, or it waits for ever. Every event is delivered, each queue in the order written.
async fn outbox_queues_keep_their_head_while_written_and_delivered(store: AnyStore) {
    const WRITERS: usize = 8;
    const EACH: usize = 60;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for index in 0..EACH {
                    let token = if index % 4 == 0 { "tok_b" } else { "tok_a" };
                    let changeset = Changeset {
                        outbox: vec![event(&format!("w{writer}-{index}"), token, NOW)],
                        ..Changeset::default()
                    };
                    store.commit(&changeset).await.unwrap();
                    // Paced, so the deliverer keeps up and the queues are often one event
                    // long: the moment a write and a delivery race for the head.
                    tokio::time::sleep(std::time::Duration::from_micros(300)).await;
                }
            })
        })
        .collect();
    let mut delivered: Vec<OutboxRow> = Vec::new();
    let mut writing = true;
    let mut idle_rounds = 0;
    while idle_rounds < 3 {
        let claimed = store
            .claim_due_events(NOW + 1, NOW + 60_000, 8)
            .await
            .unwrap();
        if claimed.is_empty() && !writing {
            idle_rounds += 1;
        }
        for event in claimed {
            store
                .record_delivery(event.id, &DeliveryOutcome::Delivered { at: NOW + 2 })
                .await
                .unwrap();
            delivered.push(event);
        }
        writing = !writers.iter().all(|writer| writer.is_finished());
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(
        delivered.len(),
        WRITERS * EACH,
        "every event delivered once"
    );
    for token in ["tok_a", "tok_b"] {
        let ids: Vec<i64> = delivered
            .iter()
            .filter(|event| event.token_id == token)
            .map(|event| event.id)
            .collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "{token} in order"
        );
        let stored = store.outbox_for_token(token).await.unwrap();
        assert!(stored.iter().all(|event| event.delivered_at.is_some()));
    }
}

async fn outbox_delivers_in_order_per_token(store: AnyStore) {
    seed(&store).await;
    store
        .commit(&insert(token_row(
            "tok_1",
            "6231180000000008",
            "card_1",
            "dev_1",
            true,
        )))
        .await
        .unwrap();
    store
        .commit(&insert(token_row(
            "tok_2",
            "6231180000000016",
            "card_2",
            "dev_1",
            false,
        )))
        .await
        .unwrap();
    let changeset = Changeset {
        outbox: vec![
            event("e1", "tok_1", NOW),
            event("e2", "tok_1", NOW),
            event("e3", "tok_2", NOW),
        ],
        ..Changeset::default()
    };
    store.commit(&changeset).await.unwrap();

    // Only the head of each token's queue is due; claimed events are leased.
    let claimed = store.claim_due_events(NOW, NOW + 30_000, 10).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e1", "e3"]
    );
    assert!(
        store
            .claim_due_events(NOW + 1, NOW + 30_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased events are not claimed twice"
    );

    // e1 fails once: it stays at the head, e2 waits behind it.
    store
        .record_delivery(
            claimed[0].id,
            &DeliveryOutcome::Retry {
                error: "HTTP 500".into(),
                next_attempt_at: NOW + 2_000,
            },
        )
        .await
        .unwrap();
    store
        .record_delivery(claimed[1].id, &DeliveryOutcome::Delivered { at: NOW + 10 })
        .await
        .unwrap();
    assert!(
        store
            .claim_due_events(NOW + 1_000, NOW + 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retry = store
        .claim_due_events(NOW + 2_000, NOW + 40_000, 10)
        .await
        .unwrap();
    assert_eq!(
        retry
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e1"]
    );
    assert_eq!(retry[0].attempts, 1);
    assert_eq!(retry[0].last_error.as_deref(), Some("HTTP 500"));
    store
        .record_delivery(
            retry[0].id,
            &DeliveryOutcome::GiveUp {
                error: "HTTP 500".into(),
                at: NOW + 2_100,
            },
        )
        .await
        .unwrap();
    // A dead-lettered event no longer blocks the token's queue.
    let next = store
        .claim_due_events(NOW + 2_200, NOW + 40_000, 10)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        ["e2"]
    );
    let all = store.outbox_for_token("tok_1").await.unwrap();
    assert_eq!(all[0].failed_at, Some(NOW + 2_100));
    assert_eq!(all[0].attempts, 2);

    // Delivered and dead-lettered events are pruned after their retention; pending ones stay.
    store
        .commit(&Changeset {
            outbox: vec![event("e4", "tok_2", NOW)],
            ..Changeset::default()
        })
        .await
        .unwrap();
    assert_eq!(store.prune_outbox(NOW + 1).await.unwrap(), 2);
    let mut left = Vec::new();
    for token in ["tok_1", "tok_2"] {
        left.extend(
            store
                .outbox_for_token(token)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.event_id),
        );
    }
    assert_eq!(left, ["e2", "e4"]);

    // Event ids are unique.
    assert!(
        store
            .commit(&Changeset {
                outbox: vec![event("e2", "tok_1", NOW)],
                ..Changeset::default()
            })
            .await
            .is_err()
    );
}

const LEASE: i64 = 60_000;

async fn idempotency_keys(store: AnyStore) {
    assert_eq!(
        store
            .idempotency_begin("tr:1", "k1", b"hash-a", NOW, NOW - LEASE)
            .await
            .unwrap(),
        IdempotencyBegin::New
    );
    assert_eq!(
        store
            .idempotency_begin("tr:1", "k1", b"hash-a", NOW, NOW - LEASE)
            .await
            .unwrap(),
        IdempotencyBegin::InProgress
    );
    assert_eq!(
        store
            .idempotency_begin("tr:1", "k1", b"hash-b", NOW, NOW - LEASE)
            .await
            .unwrap(),
        IdempotencyBegin::Mismatch
    );
    store
        .idempotency_complete("tr:1", "k1", 201, "{\"ok\":true}")
        .await
        .unwrap();
    assert_eq!(
        store
            .idempotency_begin("tr:1", "k1", b"hash-a", NOW, NOW - LEASE)
            .await
            .unwrap(),
        IdempotencyBegin::Replay {
            status: 201,
            body: "{\"ok\":true}".into()
        }
    );
    // Keys are per principal.
    assert_eq!(
        store
            .idempotency_begin("tr:2", "k1", b"hash-b", NOW, NOW - LEASE)
            .await
            .unwrap(),
        IdempotencyBegin::New
    );
    // A released key can be used again; a completed one cannot be released.
    store.idempotency_release("tr:2", "k1").await.unwrap();
    assert_eq!(
        store
            .idempotency_begin("tr:2", "k1", b"hash-c", NOW, NOW - LEASE)
            .await
            .unwrap(),
        IdempotencyBegin::New
    );
    store.idempotency_release("tr:1", "k1").await.unwrap();
    assert!(matches!(
        store
            .idempotency_begin("tr:1", "k1", b"hash-a", NOW, NOW - LEASE)
            .await
            .unwrap(),
        IdempotencyBegin::Replay { .. }
    ));
}

async fn stale_idempotency_claims_are_taken_over_once(store: AnyStore) {
    seed(&store).await;
    let begin = |key: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .idempotency_begin("tr:1", key, b"hash-a", now, now - LEASE)
                .await
                .unwrap()
        }
    };
    // A claim whose holder died, before any change: taken over once the lease has passed,
    // by one caller only.
    assert_eq!(begin("dead", NOW).await, IdempotencyBegin::New);
    assert_eq!(
        begin("dead", NOW + LEASE).await,
        IdempotencyBegin::InProgress
    );
    assert_eq!(
        begin("dead", NOW + LEASE + 1).await,
        IdempotencyBegin::TakenOver {
            effect_committed: false
        }
    );
    assert_eq!(
        begin("dead", NOW + LEASE + 2).await,
        IdempotencyBegin::InProgress
    );
    // A claim whose change was committed with it, but whose answer was never written.
    assert_eq!(begin("changed", NOW).await, IdempotencyBegin::New);
    store
        .commit(&Changeset {
            token_inserts: vec![token_row(
                "tok_1",
                "6231180000000001",
                "card_1",
                "dev_1",
                false,
            )],
            idempotency_claim: Some(IdempotencyClaim {
                principal: "tr:1".into(),
                key: "changed".into(),
            }),
            ..Changeset::default()
        })
        .await
        .unwrap();
    // Its change is made: it is not released for a blind retry.
    store.idempotency_release("tr:1", "changed").await.unwrap();
    assert_eq!(
        begin("changed", NOW + 2 * LEASE).await,
        IdempotencyBegin::TakenOver {
            effect_committed: true
        }
    );
    // The first answer written is the one kept.
    store
        .idempotency_complete("tr:1", "changed", 200, "{\"first\":true}")
        .await
        .unwrap();
    store
        .idempotency_complete("tr:1", "changed", 200, "{\"second\":true}")
        .await
        .unwrap();
    assert_eq!(
        begin("changed", NOW + 3 * LEASE).await,
        IdempotencyBegin::Replay {
            status: 200,
            body: "{\"first\":true}".into()
        }
    );
}

async fn concurrent_loads_leave_one_live_token(store: AnyStore) {
    seed(&store).await;
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let number = format!("62311800000{:05}", i);
            store
                .commit(&insert(token_row(
                    &format!("tok_{i}"),
                    &number,
                    "card_1",
                    "dev_1",
                    false,
                )))
                .await
        }));
    }
    let mut successes = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => successes += 1,
            Err(StoreError::Duplicate(Duplicate::LiveTokenForCardOnDevice)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(successes, 1);
    let live = store
        .tokens_by_device("dev_1")
        .await
        .unwrap()
        .into_iter()
        .filter(|t| !t.deleted)
        .count();
    assert_eq!(live, 1);
}

fn journal_row(stan: &str) -> JournalRow {
    JournalRow {
        id: format!("0200:48020000:{stan}:1125103000"),
        mti: "0200".into(),
        acquirer_id: "48020000".into(),
        stan: stan.into(),
        transmission_time: "1125103000".into(),
        rrn: format!("103000{stan}"),
        terminal_id: "POS00001".into(),
        token_masked: "623118******0008".into(),
        amount: 1250,
        currency: 156,
        received_at: NOW,
        response_code: None,
        auth_code: None,
        issuer_outcome: None,
        answered_at: None,
    }
}

fn saf_row(stan: &str, due: i64) -> SafRow {
    SafRow {
        id: format!("0420:0200:48020000:{stan}:1125103000"),
        mti: "0420".into(),
        kind: "reversal".into(),
        token_number: "6231180000000008".into(),
        original_mti: "0200".into(),
        stan: stan.into(),
        transmission_time: "1125103000".into(),
        acquirer_id: "48020000".into(),
        rrn: format!("103000{stan}"),
        terminal_id: "POS00001".into(),
        merchant_id: "898310048990001".into(),
        amount: 1250,
        currency: 156,
        attempts: 0,
        next_attempt_at: due,
        created_at: NOW,
        acknowledged_at: None,
        response_code: None,
    }
}

async fn journal_records_once_and_answers(store: AnyStore) {
    let first = journal_row("000001");
    let outcomes = store
        .journal_apply(&[
            JournalOp::Begin(first.clone()),
            JournalOp::Begin(journal_row("000002")),
            JournalOp::Begin(first.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0], JournalOutcome::Recorded);
    assert_eq!(outcomes[1], JournalOutcome::Recorded);
    assert_eq!(
        outcomes[2],
        JournalOutcome::Duplicate(Box::new(first.clone()))
    );
    let answer = JournalAnswer {
        id: first.id.clone(),
        response_code: "00".into(),
        auth_code: Some("A1B2C3".into()),
        issuer_outcome: "answered".into(),
        answered_at: NOW + 12,
    };
    store
        .journal_apply(&[JournalOp::Answer(answer)])
        .await
        .unwrap();
    let stored = store.journal_entry(&first.id).await.unwrap().unwrap();
    assert_eq!(stored.response_code.as_deref(), Some("00"));
    assert_eq!(stored.auth_code.as_deref(), Some("A1B2C3"));
    assert_eq!(stored.issuer_outcome.as_deref(), Some("answered"));
    assert_eq!(stored.answered_at, Some(NOW + 12));
    // A duplicate after the answer sees it.
    match &store
        .journal_apply(&[JournalOp::Begin(first.clone())])
        .await
        .unwrap()[0]
    {
        JournalOutcome::Duplicate(row) => assert_eq!(row.response_code.as_deref(), Some("00")),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert!(store.journal_entry("0200:x:y:z").await.unwrap().is_none());
}

async fn saf_queues_once_and_retries_until_acknowledged(store: AnyStore) {
    let advice = saf_row("000001", NOW);
    let outcomes = store
        .journal_apply(&[
            JournalOp::Enqueue(advice.clone()),
            JournalOp::Enqueue(saf_row("000002", NOW + 5_000)),
            JournalOp::Enqueue(advice.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            JournalOutcome::Recorded,
            JournalOutcome::Recorded,
            JournalOutcome::AlreadyQueued
        ]
    );
    assert_eq!(store.saf_due(NOW, 10).await.unwrap(), vec![advice.clone()]);
    store
        .saf_record(
            &advice.id,
            &SafDelivery::Retry {
                next_attempt_at: NOW + 10_000,
            },
        )
        .await
        .unwrap();
    assert!(store.saf_due(NOW, 10).await.unwrap().is_empty());
    let due: Vec<String> = store
        .saf_due(NOW + 10_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.stan)
        .collect();
    assert_eq!(due, vec!["000002", "000001"]);
    store
        .saf_record(
            &advice.id,
            &SafDelivery::Acknowledged {
                response_code: "00".into(),
                at: NOW + 10_001,
            },
        )
        .await
        .unwrap();
    let stored = store.saf_entry(&advice.id).await.unwrap().unwrap();
    assert_eq!(stored.attempts, 2);
    assert_eq!(stored.acknowledged_at, Some(NOW + 10_001));
    assert_eq!(stored.response_code.as_deref(), Some("00"));
    // Acknowledged advices are never due again, and a late retry does not reopen them.
    store
        .saf_record(
            &advice.id,
            &SafDelivery::Retry {
                next_attempt_at: NOW,
            },
        )
        .await
        .unwrap();
    let due = store.saf_due(NOW + 100_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].stan, "000002");

    // Two advices about one original go out in the order they were queued.
    let approval = SafRow {
        id: "0220:0200:48020000:000003:1125103000".into(),
        mti: "0220".into(),
        kind: "stand_in".into(),
        ..saf_row("000003", NOW)
    };
    let reversal = SafRow {
        created_at: NOW + 1,
        ..saf_row("000003", NOW)
    };
    store
        .journal_apply(&[
            JournalOp::Enqueue(reversal.clone()),
            JournalOp::Enqueue(approval.clone()),
        ])
        .await
        .unwrap();
    let due: Vec<String> = store
        .saf_due(NOW, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(due, vec![approval.id.clone()]);
    store
        .saf_record(
            &approval.id,
            &SafDelivery::Acknowledged {
                response_code: "00".into(),
                at: NOW + 2,
            },
        )
        .await
        .unwrap();
    let due: Vec<String> = store
        .saf_due(NOW, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(due, vec![reversal.id]);
}

async fn offline_spends_clear_once(store: AnyStore) {
    let advice = |stan: &str| SafRow {
        id: format!("0220:0220:48020000:{stan}:1125103000"),
        mti: "0220".into(),
        kind: "ecash".into(),
        ..saf_row(stan, NOW)
    };
    let clear = |stan: &str, atc: i64| JournalOp::ClearOffline {
        token_number: "6231180000000008".into(),
        atc,
        advice: advice(stan),
    };
    let outcomes = store
        .journal_apply(&[clear("000001", 7), clear("000002", 8), clear("000009", 7)])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            JournalOutcome::Recorded,
            JournalOutcome::Recorded,
            JournalOutcome::AlreadyCleared
        ]
    );
    // The same spend uploaded again, under any STAN, queues nothing more.
    assert_eq!(
        store.journal_apply(&[clear("000003", 8)]).await.unwrap(),
        vec![JournalOutcome::AlreadyCleared]
    );
    let due: Vec<String> = store
        .saf_due(NOW, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.stan)
        .collect();
    assert_eq!(due, vec!["000001", "000002"]);
    assert_eq!(
        store
            .saf_entry(&advice("000001").id)
            .await
            .unwrap()
            .unwrap()
            .kind,
        "ecash"
    );
}

async fn atcs_are_accepted_once_and_only_upwards(store: AnyStore) {
    let accept = |token: &str, atc: i64| JournalOp::AcceptAtc {
        token_number: token.into(),
        atc,
        at: NOW,
    };
    let token = "6231180000000008";
    // In one batch: the first ATC is new, its repeat and anything lower are replays; another
    // token keeps its own counter.
    assert_eq!(
        store
            .journal_apply(&[
                accept(token, 7),
                accept(token, 7),
                accept(token, 5),
                accept(token, 9),
                accept("6231180000000016", 1),
            ])
            .await
            .unwrap(),
        vec![
            JournalOutcome::Recorded,
            JournalOutcome::StaleAtc,
            JournalOutcome::StaleAtc,
            JournalOutcome::Recorded,
            JournalOutcome::Recorded,
        ]
    );
    // Racing writers (as two switch instances on one store would be): one wins each ATC.
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        async move { store.journal_apply(&[accept(token, 10)]).await.unwrap() }
    });
    let outcomes: Vec<Vec<JournalOutcome>> = futures_join_all(attempts).await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o[0] == JournalOutcome::Recorded)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        store.journal_apply(&[accept(token, 10)]).await.unwrap(),
        vec![JournalOutcome::StaleAtc],
        "remembered after the race"
    );
}

/// Runs futures concurrently on the runtime's threads and collects their results in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn push_receipts_spend_once_and_declines_are_counted(store: AnyStore) {
    assert!(
        store
            .spend_push_receipt("rcp_1", "tr_a", NOW)
            .await
            .unwrap()
    );
    assert!(
        !store
            .spend_push_receipt("rcp_1", "tr_b", NOW)
            .await
            .unwrap()
    );
    store.unspend_push_receipt("rcp_1").await.unwrap();
    assert!(
        store
            .spend_push_receipt("rcp_1", "tr_a", NOW)
            .await
            .unwrap()
    );

    let decline = |card: u8, user: &str, at: i64| DeclineRow {
        card_fingerprint: vec![card; 32],
        token_requestor_id: "tr_a".into(),
        user_id: user.into(),
        reason: "CVN2_MISMATCH".into(),
        declined_at: at,
    };
    for row in [
        decline(1, "usr_1", NOW - 10_000),
        decline(1, "usr_1", NOW),
        decline(1, "usr_2", NOW + 1),
        decline(2, "usr_1", NOW + 2),
    ] {
        store.record_provisioning_decline(&row).await.unwrap();
    }
    assert_eq!(
        store
            .provisioning_declines_since(&[1; 32], "usr_1", NOW)
            .await
            .unwrap(),
        DeclineCounts {
            for_card: 2,
            for_user: 2
        }
    );
    let of_card = store
        .provisioning_declines_of_card(&[1; 32], 0, 2)
        .await
        .unwrap();
    assert_eq!(
        of_card,
        vec![decline(1, "usr_2", NOW + 1), decline(1, "usr_1", NOW)]
    );
}

/// The first notification of `order`, due at 10.
fn notification_of(order: &OrderRow) -> NotificationRow {
    NotificationRow {
        id: 0,
        tn: order.tn.clone(),
        mer_id: order.mer_id.clone(),
        url: order.back_url.clone(),
        body: "respCode=00".into(),
        attempts: 0,
        next_attempt_at: 10,
        delivered_at: None,
        failed_at: None,
        last_status: None,
        created_at: 5,
    }
}

fn order(tn: &str, order_id: &str) -> OrderRow {
    OrderRow {
        tn: tn.into(),
        mer_id: "777290058110048".into(),
        order_id: order_id.into(),
        txn_time: "20261202120000".into(),
        amount: 100,
        currency: 156,
        channel: "08".into(),
        back_url: "https://merchant.example/notify".into(),
        front_url: None,
        req_reserved: Some("{a=b}".into()),
        pay_timeout: 1_796_200_000,
        request_digest: "d1".into(),
        status: "issued".into(),
        refunded: 0,
        refund_reserved: 0,
        paid_at: None,
        query_id: None,
        pay_response_code: None,
        pay_card_masked: None,
        pay_card_type: None,
        auth_stan: None,
        auth_transmission_time: None,
        created_at: 1,
        updated_at: 1,
        version: 1,
        kind: "consume".into(),
        original_tn: None,
        request_echo: "bizType=000201&accessType=2&subMerId=SUB001".into(),
        discount: 0,
        campaign_id: None,
    }
}

async fn gateway_merchants_are_registered_once_and_updated(store: AnyStore) {
    use cloudpass_store::MerchantRow;
    let merchant = MerchantRow {
        mer_id: "898310048990011".into(),
        name: "Shop".into(),
        certificate_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        permissions: "app_consume,query".into(),
        secure_key_sealed: None,
        created_at: 5,
        updated_at: 5,
    };
    assert!(store.insert_merchant(&merchant).await.unwrap());
    let other = MerchantRow {
        name: "Another shop".into(),
        ..merchant.clone()
    };
    assert!(
        !store.insert_merchant(&other).await.unwrap(),
        "a merId is registered once"
    );
    assert_eq!(
        store.merchant("898310048990011").await.unwrap(),
        Some(merchant.clone())
    );
    let granted = MerchantRow {
        permissions: "app_consume,query,refund".into(),
        secure_key_sealed: Some(vec![1, 2, 3, 0, 255]),
        updated_at: 9,
        ..merchant.clone()
    };
    assert!(store.update_merchant(&granted).await.unwrap());
    let missing = MerchantRow {
        mer_id: "898310048990012".into(),
        ..merchant.clone()
    };
    assert!(!store.update_merchant(&missing).await.unwrap());
    assert_eq!(store.merchants().await.unwrap(), vec![granted]);
    assert_eq!(store.merchant("898310048990012").await.unwrap(), None);

    // Sandbox settings: none until set, then the last value set.
    assert_eq!(
        store
            .failed_notification_sends("777290058110048")
            .await
            .unwrap(),
        0
    );
    store
        .set_failed_notification_sends("777290058110048", 2)
        .await
        .unwrap();
    store
        .set_failed_notification_sends("777290058110048", 3)
        .await
        .unwrap();
    assert_eq!(
        store
            .failed_notification_sends("777290058110048")
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .failed_notification_sends("898310048990011")
            .await
            .unwrap(),
        0
    );

    // Sandbox clocks: advanced by steps, listed only when not at zero; the drill stays.
    assert!(store.sandbox_clocks().await.unwrap().is_empty());
    assert_eq!(
        store
            .advance_sandbox_clock("777290058110048", 60_000)
            .await
            .unwrap(),
        60_000
    );
    assert_eq!(
        store
            .advance_sandbox_clock("777290058110048", 900_000)
            .await
            .unwrap(),
        960_000
    );
    assert_eq!(
        store
            .advance_sandbox_clock("898310048990011", 1_000)
            .await
            .unwrap(),
        1_000
    );
    assert_eq!(
        store.sandbox_clocks().await.unwrap(),
        vec![
            ("777290058110048".to_owned(), 960_000),
            ("898310048990011".to_owned(), 1_000)
        ]
    );
    assert_eq!(
        store
            .failed_notification_sends("777290058110048")
            .await
            .unwrap(),
        3
    );

    // Certification cases: recorded once, at the first time they passed.
    assert!(
        store
            .record_certification("898310048990011", "undo", 20)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_certification("898310048990011", "undo", 30)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_certification("898310048990011", "consume_success", 25)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_certification("898310048990012", "undo", 40)
            .await
            .unwrap()
    );
    assert_eq!(
        store.certification_of("898310048990011").await.unwrap(),
        vec![("consume_success".to_owned(), 25), ("undo".to_owned(), 20)]
    );
}

async fn a_return_and_its_consume_are_written_together_or_not_at_all(store: AnyStore) {
    let mut consume = order("611854042060710157701", "20261202101");
    consume.status = "paid".into();
    consume.query_id = Some("Q1".into());
    assert_eq!(
        store.insert_order(&consume).await.unwrap(),
        OrderInsert::Inserted
    );
    let reserved = |version: i64, reserved: i64| OrderRow {
        refund_reserved: reserved,
        version,
        ..consume.clone()
    };
    let mut refund = order("611854042060710157702", "20261202102");
    refund.kind = "refund".into();
    refund.status = "paying".into();
    refund.original_tn = Some(consume.tn.clone());
    // A consume read at an old version: neither the refund nor the reservation is written.
    assert!(matches!(
        store.insert_return(&refund, &reserved(3, 40)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.order_by_tn(&refund.tn).await.unwrap(), None);
    assert_eq!(
        store.order_by_tn(&consume.tn).await.unwrap(),
        Some(consume.clone())
    );
    // Read at its version: both.
    assert_eq!(
        store
            .insert_return(&refund, &reserved(2, 40))
            .await
            .unwrap(),
        OrderInsert::Inserted
    );
    assert_eq!(
        store.order_by_tn(&consume.tn).await.unwrap(),
        Some(reserved(2, 40))
    );
    // The same return again (its orderId and txnTime): the first, and the consume untouched.
    assert_eq!(
        store
            .insert_return(&refund, &reserved(3, 80))
            .await
            .unwrap(),
        OrderInsert::Exists(Box::new(refund.clone()))
    );
    assert_eq!(
        store.order_by_tn(&consume.tn).await.unwrap(),
        Some(reserved(2, 40))
    );

    // The answer on both with its notification, or — one of them stale — nothing at all.
    let answered_consume = OrderRow {
        status: "partly_refunded".into(),
        refunded: 40,
        refund_reserved: 0,
        version: 3,
        ..consume.clone()
    };
    let answered_refund = OrderRow {
        status: "paid".into(),
        version: 2,
        ..refund.clone()
    };
    let stale_refund = OrderRow {
        version: 5,
        ..answered_refund.clone()
    };
    let note = notification_of(&answered_refund);
    assert!(matches!(
        store
            .update_orders(&[answered_consume.clone(), stale_refund], Some(&note))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.order_by_tn(&consume.tn).await.unwrap(),
        Some(reserved(2, 40))
    );
    assert!(store.notifications_of(&refund.tn).await.unwrap().is_empty());
    store
        .update_orders(
            &[answered_consume.clone(), answered_refund.clone()],
            Some(&note),
        )
        .await
        .unwrap();
    assert_eq!(
        store.order_by_tn(&consume.tn).await.unwrap(),
        Some(answered_consume)
    );
    assert_eq!(
        store.order_by_tn(&refund.tn).await.unwrap(),
        Some(answered_refund)
    );
    assert_eq!(store.notifications_of(&refund.tn).await.unwrap().len(), 1);
}

async fn gateway_orders_are_unique_and_written_by_version(store: AnyStore) {
    let first = order("611854042060710157601", "20261202001");
    assert_eq!(
        store.insert_order(&first).await.unwrap(),
        OrderInsert::Inserted
    );
    // The same merchant key again: the stored order comes back, whatever TN was drawn.
    let again = order("611854042060710157602", "20261202001");
    assert_eq!(
        store.insert_order(&again).await.unwrap(),
        OrderInsert::Exists(Box::new(first.clone()))
    );
    // Unpaid past its payTimeout (1_796_200_000): found by the sweep, and only then.
    assert!(
        store
            .unpaid_past_timeout(1_796_200_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.unpaid_past_timeout(1_796_200_001, 10).await.unwrap(),
        vec![first.clone()]
    );
    // Another order that drew a TN already taken.
    let clash = order("611854042060710157601", "20261202002");
    assert_eq!(
        store.insert_order(&clash).await.unwrap(),
        OrderInsert::TnTaken
    );
    assert_eq!(
        store.order_by_tn("611854042060710157602").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .order("777290058110048", "20261202001", "20261202120000")
            .await
            .unwrap(),
        Some(first.clone())
    );

    // In flight: found as unanswered once its last change is old enough.
    let mut paying = first.clone();
    paying.status = "paying".into();
    paying.auth_stan = Some("000123".into());
    paying.updated_at = 7;
    paying.version = 2;
    store.update_order(&paying, None).await.unwrap();
    assert!(store.paying_since(7, 10).await.unwrap().is_empty());
    assert_eq!(
        store.paying_since(8, 10).await.unwrap(),
        vec![paying.clone()]
    );
    let mut first = first.clone();
    first.version = 3;
    first.updated_at = 8;
    store.update_order(&first, None).await.unwrap();
    assert!(store.paying_since(1_000, 10).await.unwrap().is_empty());

    // Paid, by version; a writer that read the old version conflicts and writes nothing.
    let mut paid = first.clone();
    paid.status = "paid".into();
    paid.query_id = Some("102612021200001234567".into());
    paid.pay_card_masked = Some("622638******0095".into());
    paid.paid_at = Some(5);
    paid.version = 4;
    let notification = notification_of(&first);
    store
        .update_order(&paid, Some(&notification))
        .await
        .unwrap();
    let mut stale = first.clone();
    stale.status = "closed".into();
    stale.version = 4;
    assert!(matches!(
        store.update_order(&stale, Some(&notification)).await,
        Err(StoreError::Conflict)
    ));
    // The notification went with the change that won, and only with it.
    let written = store.notifications_of(&first.tn).await.unwrap();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(store.due_notifications(9, 10).await.unwrap().is_empty());
    // Succeeded at 5 ms: in [5, 6), not in [0, 5) nor for another merchant.
    assert_eq!(
        store
            .succeeded_between("777290058110048", 5, 6)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .succeeded_between("777290058110048", 0, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .succeeded_between("777290058110097", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mut due = store.due_notifications(10, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    due[0].attempts = 1;
    due[0].delivered_at = Some(11);
    due[0].last_status = Some(200);
    store.record_notification(&due[0]).await.unwrap();
    assert!(store.due_notifications(1_000, 10).await.unwrap().is_empty());
    assert_eq!(
        store.notifications_of(&first.tn).await.unwrap()[0].last_status,
        Some(200)
    );
    assert_eq!(
        store.order_by_tn(&first.tn).await.unwrap(),
        Some(paid.clone())
    );
    assert_eq!(
        store
            .order_by_query_id("102612021200001234567")
            .await
            .unwrap(),
        Some(paid)
    );
}

async fn wallet_accounts_are_unique_and_sessions_expire(store: AnyStore) {
    let user = AccountRow {
        id: "u_1".into(),
        phone: "13800000001".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        failed_logins: 0,
        locked_until: 0,
        created_at: NOW,
    };
    assert!(store.insert_account(&user).await.unwrap());
    // One account per phone number, whatever the id.
    let again = AccountRow {
        id: "u_2".into(),
        ..user.clone()
    };
    assert!(!store.insert_account(&again).await.unwrap());
    assert_eq!(
        store.account_by_phone("13800000001").await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(store.account_by_phone("13800000002").await.unwrap(), None);

    store
        .set_login_failures("u_1", 5, NOW + 900_000)
        .await
        .unwrap();
    let locked = store
        .account_by_phone("13800000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (locked.failed_logins, locked.locked_until),
        (5, NOW + 900_000)
    );

    let session = WalletSessionRow {
        token_hash: "ab".repeat(32),
        user_id: "u_1".into(),
        created_at: NOW,
        expires_at: NOW + 1_000,
    };
    store.insert_wallet_session(&session).await.unwrap();
    let (found, owner) = store
        .wallet_session(&session.token_hash, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, session);
    assert_eq!(owner.id, "u_1");
    // Expired at its expiry, and swept then.
    assert_eq!(
        store
            .wallet_session(&session.token_hash, NOW + 1_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_expired_wallet_sessions(NOW + 999)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .delete_expired_wallet_sessions(NOW + 1_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .wallet_session(&session.token_hash, NOW)
            .await
            .unwrap(),
        None
    );

    // Signing out deletes the one session.
    store.insert_wallet_session(&session).await.unwrap();
    store
        .delete_wallet_session(&session.token_hash)
        .await
        .unwrap();
    assert_eq!(
        store
            .wallet_session(&session.token_hash, NOW)
            .await
            .unwrap(),
        None
    );
}

async fn wallet_cards_are_bound_once_per_account(store: AnyStore) {
    let account = |id: &str, phone: &str| AccountRow {
        id: id.into(),
        phone: phone.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        failed_logins: 0,
        locked_until: 0,
        created_at: NOW,
    };
    assert!(
        store
            .insert_account(&account("u_1", "13800000011"))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_account(&account("u_2", "13800000012"))
            .await
            .unwrap()
    );
    let pending = |id: &str, user: &str| WalletCardRow {
        id: id.into(),
        user_id: user.into(),
        fingerprint: vec![7; 32],
        pan_sealed: vec![1, 2, 3],
        pan_masked: "622609******0048".into(),
        funding: "debit".into(),
        product: Some("CMB_DEBIT".into()),
        status: "pending".into(),
        code_digest: Some(vec![9; 32]),
        code_attempts: 0,
        code_expires_at: NOW + 300_000,
        created_at: NOW,
        bound_at: None,
        expiry_sealed: Some(vec![4, 5, 6]),
    };
    // A new binding replaces the account's pending one.
    store
        .start_wallet_binding(&pending("c_1", "u_1"))
        .await
        .unwrap();
    store
        .start_wallet_binding(&pending("c_2", "u_1"))
        .await
        .unwrap();
    assert_eq!(store.wallet_card("u_1", "c_1").await.unwrap(), None);
    store.set_wallet_code_attempts("c_2", 2).await.unwrap();
    let found = store.wallet_card("u_1", "c_2").await.unwrap().unwrap();
    assert_eq!(found.code_attempts, 2);
    // Another account cannot see it.
    assert_eq!(store.wallet_card("u_2", "c_2").await.unwrap(), None);

    assert!(store.bind_wallet_card("c_2", NOW + 1).await.unwrap());
    assert!(
        !store.bind_wallet_card("c_2", NOW + 2).await.unwrap(),
        "bound once"
    );
    let bound = store.bound_wallet_cards("u_1").await.unwrap();
    assert_eq!(bound.len(), 1);
    assert_eq!(
        (bound[0].status.as_str(), bound[0].bound_at),
        ("bound", Some(NOW + 1))
    );
    assert_eq!(
        bound[0].code_digest, None,
        "the code's digest goes once bound"
    );
    assert_eq!(bound[0].expiry_sealed.as_deref(), Some(&[4, 5, 6][..]));

    // The same card again for the same account: not bound twice; another account may.
    store
        .start_wallet_binding(&pending("c_3", "u_1"))
        .await
        .unwrap();
    assert!(!store.bind_wallet_card("c_3", NOW + 3).await.unwrap());
    store
        .start_wallet_binding(&pending("c_4", "u_2"))
        .await
        .unwrap();
    assert!(store.bind_wallet_card("c_4", NOW + 4).await.unwrap());
    assert_eq!(store.bound_wallet_cards("u_1").await.unwrap().len(), 1);
    assert_eq!(store.bound_wallet_cards("u_2").await.unwrap().len(), 1);

    // Unbinding: only the account's own bound card, once; then it may be bound again.
    assert!(!store.remove_wallet_card("u_1", "c_4").await.unwrap());
    assert!(store.remove_wallet_card("u_1", "c_2").await.unwrap());
    assert!(!store.remove_wallet_card("u_1", "c_2").await.unwrap());
    assert!(store.bound_wallet_cards("u_1").await.unwrap().is_empty());
    store
        .start_wallet_binding(&pending("c_5", "u_1"))
        .await
        .unwrap();
    assert!(store.bind_wallet_card("c_5", NOW + 5).await.unwrap());
}

async fn wallet_devices_are_bounded_and_signed_out_once(store: AnyStore) {
    let account = |id: &str, phone: &str| AccountRow {
        id: id.into(),
        phone: phone.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        failed_logins: 0,
        locked_until: 0,
        created_at: NOW,
    };
    for (id, phone) in [("u_1", "13800000021"), ("u_2", "13800000022")] {
        assert!(store.insert_account(&account(id, phone)).await.unwrap());
    }
    let device = |id: &str, user: &str, at: i64| WalletDeviceRow {
        id: id.into(),
        user_id: user.into(),
        kind: "handset_se".into(),
        maker: "huawei".into(),
        name: "Huawei phone".into(),
        created_at: at,
        signed_out_at: None,
    };
    for n in 0..WALLET_DEVICES_MAX {
        assert!(
            store
                .insert_wallet_device(&device(&format!("d_{n}"), "u_1", NOW + n))
                .await
                .unwrap()
        );
    }
    assert!(
        !store
            .insert_wallet_device(&device("d_over", "u_1", NOW + 99))
            .await
            .unwrap(),
        "an account holds at most WALLET_DEVICES_MAX devices"
    );
    let listed = store.wallet_devices("u_1").await.unwrap();
    assert_eq!(listed.len() as i64, WALLET_DEVICES_MAX);
    assert_eq!(listed[0], device("d_0", "u_1", NOW), "oldest first");
    assert!(store.wallet_devices("u_2").await.unwrap().is_empty());
    assert_eq!(store.wallet_device("u_2", "d_0").await.unwrap(), None);
    assert_eq!(
        store.wallet_device_by_id("d_0").await.unwrap(),
        Some(device("d_0", "u_1", NOW))
    );
    assert_eq!(store.wallet_device_by_id("d_none").await.unwrap(), None);

    // Signed out once, by its own account only.
    assert!(
        !store
            .sign_out_wallet_device("u_2", "d_0", NOW + 5)
            .await
            .unwrap()
    );
    assert!(
        store
            .sign_out_wallet_device("u_1", "d_0", NOW + 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .sign_out_wallet_device("u_1", "d_0", NOW + 6)
            .await
            .unwrap()
    );
    let found = store.wallet_device("u_1", "d_0").await.unwrap().unwrap();
    assert_eq!(found.signed_out_at, Some(NOW + 5));
}

async fn console_lists_are_newest_first_and_counted(store: AnyStore) {
    // Three orders made one after another; the second is paid, with its notification.
    let mut orders = Vec::new();
    for (n, tn) in [
        "611854042060710157701",
        "611854042060710157702",
        "611854042060710157703",
    ]
    .into_iter()
    .enumerate()
    {
        let mut row = order(tn, &format!("CONSOLE{n}"));
        row.created_at = 100 + n as i64;
        assert_eq!(
            store.insert_order(&row).await.unwrap(),
            OrderInsert::Inserted
        );
        orders.push(row);
    }
    let mut paid = orders[1].clone();
    paid.status = "paid".into();
    paid.version = 2;
    let notification = notification_of(&paid);
    store
        .update_order(&paid, Some(&notification))
        .await
        .unwrap();
    let newest: Vec<String> = store
        .recent_orders(2)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.tn)
        .collect();
    assert_eq!(newest, vec![orders[2].tn.clone(), orders[1].tn.clone()]);
    assert_eq!(
        store.order_counts().await.unwrap(),
        vec![("issued".to_owned(), 2), ("paid".to_owned(), 1)]
    );
    let sent = store.recent_notifications(10).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].tn, paid.tn);

    // The journal, newest first.
    let mut older = journal_row("000011");
    older.received_at = NOW - 5;
    let newer = journal_row("000012");
    store
        .journal_apply(&[
            JournalOp::Begin(older.clone()),
            JournalOp::Begin(newer.clone()),
        ])
        .await
        .unwrap();
    let journal = store.recent_journal(1).await.unwrap();
    assert_eq!(journal, vec![newer]);
    assert_eq!(store.recent_journal(10).await.unwrap().len(), 2);

    // Tokens, newest first.
    seed(&store).await;
    let mut first = token_row("tok_c1", "6231180000000101", "card_1", "dev_1", true);
    first.created_at = NOW - 10;
    let second = token_row("tok_c2", "6231180000000102", "card_2", "dev_1", false);
    store.commit(&insert(first)).await.unwrap();
    store.commit(&insert(second)).await.unwrap();
    let tokens: Vec<String> = store
        .recent_tokens(10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(tokens, vec!["tok_c2".to_owned(), "tok_c1".to_owned()]);
}

/// A campaign's spending is what its paid and in-flight consumes took off, less what
/// succeeded returns gave back; failed, closed and unsent payments and other campaigns'
/// orders do not count, and the discount is written with the order's state.
async fn campaign_spending_is_summed_from_its_orders(store: AnyStore) {
    let campaign = |tn: &str, order_id: &str, kind: &str, status: &str, discount: i64| {
        let mut row = order(tn, order_id);
        row.kind = kind.into();
        row.status = status.into();
        row.discount = discount;
        row.campaign_id = Some("CP2026120001".into());
        row
    };
    assert_eq!(store.campaign_spent("CP2026120001").await.unwrap(), 0);
    for row in [
        campaign("611854042060710157701", "D01", "consume", "paid", 500),
        campaign("611854042060710157702", "D02", "consume", "paying", 500),
        campaign("611854042060710157703", "D03", "consume", "refunded", 500),
        campaign("611854042060710157704", "D04", "consume", "failed", 500),
        campaign("611854042060710157705", "D05", "consume", "issued", 500),
        campaign("611854042060710157706", "D06", "consume", "closed", 500),
        campaign("611854042060710157707", "D07", "refund", "paid", 250),
        campaign("611854042060710157708", "D08", "refund", "paying", 250),
        campaign("611854042060710157709", "D09", "refund", "failed", 250),
    ] {
        assert_eq!(
            store.insert_order(&row).await.unwrap(),
            OrderInsert::Inserted
        );
    }
    let mut other = campaign("611854042060710157710", "D10", "consume", "paid", 900);
    other.campaign_id = Some("CP2026120002".into());
    store.insert_order(&other).await.unwrap();
    assert_eq!(store.campaign_spent("CP2026120001").await.unwrap(), 1_250);
    assert_eq!(store.campaign_spent("CP2026120002").await.unwrap(), 900);
    assert_eq!(store.campaign_spent("CP2026120009").await.unwrap(), 0);

    // The discount and campaign are set by the write that marks a payment sent.
    let plain = order("611854042060710157711", "D11");
    store.insert_order(&plain).await.unwrap();
    let mut sending = plain.clone();
    sending.status = "paying".into();
    sending.discount = 500;
    sending.campaign_id = Some("CP2026120002".into());
    sending.version += 1;
    store.update_order(&sending, None).await.unwrap();
    assert_eq!(
        store.order_by_tn(&plain.tn).await.unwrap(),
        Some(sending.clone())
    );
    assert_eq!(store.campaign_spent("CP2026120002").await.unwrap(), 1_400);
}

/// A merchant's opening is named by its orderId and txnTime: the same names find the token
/// already opened (its digest tells a repeat from another request); a drawn token already
/// taken is told apart; a token is deleted once, and stays to be read.
async fn card_tokens_are_opened_once_and_deleted_once(store: AnyStore) {
    let row = CardTokenRow {
        token: "6299000000000000017".into(),
        mer_id: "777290058110048".into(),
        tr_id: "62000000001".into(),
        order_id: "OPEN0001".into(),
        txn_time: "20261204120000".into(),
        request_digest: "d1".into(),
        sealed_card: vec![7; 60],
        card_masked: "622609******0048".into(),
        card_type: "01".into(),
        status: "active".into(),
        opened_at: NOW,
        deleted_at: None,
    };
    assert_eq!(store.card_token(&row.token).await.unwrap(), None);
    assert_eq!(
        store.insert_card_token(&row).await.unwrap(),
        CardTokenInsert::Inserted
    );
    assert_eq!(
        store.card_token(&row.token).await.unwrap(),
        Some(row.clone())
    );

    // The same opening again, under another drawn token: the first is found.
    let mut again = row.clone();
    again.token = "6299000000000000025".into();
    assert_eq!(
        store.insert_card_token(&again).await.unwrap(),
        CardTokenInsert::Exists(Box::new(row.clone()))
    );
    assert_eq!(store.card_token(&again.token).await.unwrap(), None);

    // Another opening drawing a token that is taken.
    let mut taken = row.clone();
    taken.order_id = "OPEN0002".into();
    assert_eq!(
        store.insert_card_token(&taken).await.unwrap(),
        CardTokenInsert::TokenTaken
    );
    // The same orderId under another merchant is its own opening.
    let mut other_merchant = again.clone();
    other_merchant.mer_id = "777290058110097".into();
    assert_eq!(
        store.insert_card_token(&other_merchant).await.unwrap(),
        CardTokenInsert::Inserted
    );

    assert!(store.delete_card_token(&row.token, NOW + 5).await.unwrap());
    assert!(!store.delete_card_token(&row.token, NOW + 9).await.unwrap());
    assert!(
        !store
            .delete_card_token("6299000000000000099", NOW)
            .await
            .unwrap()
    );
    let deleted = store.card_token(&row.token).await.unwrap().unwrap();
    assert_eq!(deleted.status, "deleted");
    assert_eq!(deleted.deleted_at, Some(NOW + 5));
    assert_eq!(
        store
            .card_token(&other_merchant.token)
            .await
            .unwrap()
            .unwrap()
            .status,
        "active"
    );
}

/// A terminal's keys from its last sign-on replace those before; each terminal has its own.
async fn terminal_keys_are_kept_per_terminal_and_replaced(store: AnyStore) {
    assert_eq!(store.terminal_keys().await.unwrap(), vec![]);
    let row = |terminal: &str, pin: &str, at: i64| TerminalKeysRow {
        acquirer_id: "48020000".into(),
        terminal_id: terminal.into(),
        pin_key: format!("cpk1.pin.{pin}"),
        mac_key: format!("cpk1.mac.{pin}"),
        signed_on_at: at,
    };
    store
        .save_terminal_keys(&row("CPPOS001", "aa", NOW))
        .await
        .unwrap();
    store
        .save_terminal_keys(&row("CPPOS002", "bb", NOW))
        .await
        .unwrap();
    store
        .save_terminal_keys(&row("CPPOS001", "cc", NOW + 1))
        .await
        .unwrap();
    assert_eq!(
        store.terminal_keys().await.unwrap(),
        vec![row("CPPOS001", "cc", NOW + 1), row("CPPOS002", "bb", NOW)]
    );
}

/// Operators' backlogs: advices not acknowledged and merchant notifications neither
/// delivered nor given up, each with the creation time of the oldest.
async fn backlogs_count_what_is_pending_and_its_oldest(store: AnyStore) {
    store.ping().await.unwrap();
    assert_eq!(store.backlogs().await.unwrap(), Backlogs::default());
    let mut older = saf_row("000901", NOW);
    older.created_at = NOW - 60_000;
    store
        .journal_apply(&[
            JournalOp::Enqueue(older.clone()),
            JournalOp::Enqueue(saf_row("000902", NOW)),
        ])
        .await
        .unwrap();
    let backlogs = store.backlogs().await.unwrap();
    assert_eq!(
        backlogs.store_and_forward,
        Backlog {
            pending: 2,
            oldest_created_at: Some(NOW - 60_000)
        }
    );
    store
        .saf_record(
            &older.id,
            &SafDelivery::Acknowledged {
                response_code: "00".into(),
                at: NOW,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.backlogs().await.unwrap().store_and_forward,
        Backlog {
            pending: 1,
            oldest_created_at: Some(NOW)
        }
    );

    let first = order("611854042060710157801", "B01");
    store.insert_order(&first).await.unwrap();
    let mut paid = first.clone();
    paid.status = "paid".into();
    paid.version += 1;
    store
        .update_order(&paid, Some(&notification_of(&first)))
        .await
        .unwrap();
    let backlogs = store.backlogs().await.unwrap();
    assert_eq!(
        backlogs.merchant_notifications,
        Backlog {
            pending: 1,
            oldest_created_at: Some(5)
        }
    );
    assert_eq!(backlogs.outbox, Backlog::default());
}
