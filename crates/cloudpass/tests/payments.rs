//! Payments end to end over real TCP: a phone provisioned through the token service API taps
//! (or pays in an app) at a sandbox terminal, the terminal's 0200 crosses the switch as a
//! token, the issuer host answers for its own card, and the issuer's ledger is checked after
//! every step. Every scenario runs on SQLite and on PostgreSQL (the platform's store: the
//! vault, the switch's journal and its store-and-forward queue).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::time::Duration;

use cloudpass_core::ManualClock;
use cloudpass_core::{AccountNumber, luhn_check_digit};
use cloudpass_iso8583::private::{FIELD_60, Positional};
use cloudpass_iso8583::{Message, Mti};
use cloudpass_sim::pos::{Presentment, Purchase};
use cloudpass_store::TokenStore;
use cloudpass_switch::{StandInPolicy, SwitchConfig};
use serde_json::json;
use support::app::*;
use support::network::*;

on_both_backends!(
    taps_without_and_with_pin,
    wrong_pins_then_blocked,
    token_states_decide,
    reissued_card_keeps_its_token,
    cryptograms_are_checked,
    in_app_payments,
    funds_duplicates_and_reversals,
    issuer_timeout_reverses_once,
    terminal_timeout_reverses_once,
    issuer_down_declines_or_stands_in,
    hce_phone_replenishes,
    ecash_loads_spends_offline_and_clears_once,
    authorization_only_posts_nothing,
);

/// Messages built by hand here come from the sandbox's plain acquirer: they carry no MAC.
const PLAIN_ACQUIRER: &str = cloudpass::sandbox::PLAIN_ACQUIRER_ID;
const PLAIN_MERCHANT: &str = cloudpass::sandbox::PLAIN_MERCHANT_ID;

fn code(outcome: &cloudpass_sim::pos::Outcome) -> &str {
    outcome.response_code.as_deref().unwrap_or("none")
}

async fn taps_without_and_with_pin(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app, "CPPOS001").await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;

    // Under both no-PIN limits (acquirer 1,000.00, card 1,000.00): approved without PIN.
    let small = shop.tap(&mut phone, "12.50", None, false).await;
    assert_eq!(code(&small), "00", "{small:?}");
    assert!(
        small.arpc,
        "the issuer's answer to the cryptogram comes back"
    );
    assert!(small.mac_ok, "the answer's MAC checks");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 1250);

    // Over the limit without PIN: declined 65 (PIN required); nothing moves.
    let big = shop.tap(&mut phone, "1500.00", None, false).await;
    assert_eq!(code(&big), "65", "{big:?}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 1250);
    assert!(
        shop.pos
            .asks_for_pin(cny("1500.00"), phone.contactless_no_pin_limit(), false)
    );

    // With the card's PIN: approved.
    let with_pin = shop.tap(&mut phone, "1500.00", Some("111101"), false).await;
    assert_eq!(code(&with_pin), "00", "{with_pin:?}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 1250 - 150_000);

    // The phone verified the cardholder (CDCVM): no PIN needed above the limit.
    let cdcvm = shop.tap(&mut phone, "1200.00", None, true).await;
    assert_eq!(code(&cdcvm), "00", "{cdcvm:?}");
    assert_eq!(
        balance(&app, CMB_DEBIT).await,
        start - 1250 - 150_000 - 120_000
    );

    // A merchant category outside the no-PIN scheme needs the PIN even for small amounts.
    let amount = cny("10.00");
    let tap = phone.tap(&shop.pos.terminal_data(amount), false).unwrap();
    let outcome = {
        let jeweller = Shop::open_as(&app, "CPPOS002", "5944").await;
        jeweller
            .pos
            .purchase(&Purchase {
                account: phone.token(),
                expiry: Some(phone.expiry()),
                amount,
                field55: &tap.field55,
                presentment: Presentment::Contactless {
                    track2: &tap.track2,
                },
                pin: None,
            })
            .await
            .unwrap()
    };
    assert_eq!(code(&outcome), "65", "{outcome:?}");
    assert_eq!(
        balance(&app, CMB_DEBIT).await,
        start - 1250 - 150_000 - 120_000
    );
    app.stop().await;
}

async fn wrong_pins_then_blocked(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app, "CPPOS001").await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let first = shop.tap(&mut phone, "1500.00", Some("999999"), false).await;
    assert_eq!(code(&first), "55", "{first:?}");
    let second = shop.tap(&mut phone, "1500.00", Some("000000"), false).await;
    assert_eq!(code(&second), "55");
    let third = shop.tap(&mut phone, "1500.00", Some("123123"), false).await;
    assert_eq!(code(&third), "75", "the third wrong PIN blocks: {third:?}");
    let right = shop.tap(&mut phone, "1500.00", Some("111101"), false).await;
    assert_eq!(code(&right), "75", "blocked even with the right PIN");
    assert_eq!(balance(&app, CMB_DEBIT).await, start);
    app.stop().await;
}

async fn token_states_decide(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app, "CPPOS001").await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", PINGAN_DEBIT).await;
    let token_id = phone.token_id().to_owned();
    let start = balance(&app, PINGAN_DEBIT).await;
    assert_eq!(
        code(&shop.tap(&mut phone, "20.00", None, false).await),
        "00"
    );

    // Suspended through the token service API: the token is declined at once.
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token_id}/suspend"),
            json!({"reason": "LOST"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let suspended = shop.tap(&mut phone, "20.00", None, false).await;
    assert_eq!(code(&suspended), "57", "{suspended:?}");
    assert_eq!(balance(&app, PINGAN_DEBIT).await, start - 2000);

    // …while the physical card still pays at its bank.
    let physical = app
        .bank()
        .process(&card_purchase(PINGAN_DEBIT, "2912", 3000, "000777"))
        .await;
    assert_eq!(physical.get_str(39), Some("00"));
    assert_eq!(balance(&app, PINGAN_DEBIT).await, start - 2000 - 3000);

    // Resumed: approved again.
    let (status, _) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token_id}/resume"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        code(&shop.tap(&mut phone, "20.00", None, false).await),
        "00"
    );

    // Deleted: 14, no such card.
    let (status, _) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token_id}/delete"),
            json!({"reason": "OTHER"}),
        )
        .await;
    assert_eq!(status, 200);
    let deleted = shop.tap(&mut phone, "20.00", None, false).await;
    assert_eq!(code(&deleted), "14", "{deleted:?}");
    assert_eq!(
        balance(&app, PINGAN_DEBIT).await,
        start - 2000 - 3000 - 2000
    );
    app.stop().await;
}

/// A 0200 for a physical card, straight to its bank (a contact chip purchase).
fn card_purchase(card: &str, expiry: &str, amount: u64, stan: &str) -> Message<'static> {
    let mut message = Message::new(Mti::FINANCIAL_REQUEST);
    message
        .set_text(2, card)
        .set_text(3, "000000")
        .set_text(4, format!("{amount:012}"))
        .set_text(7, "1125120000")
        .set_text(11, stan)
        .set_text(14, expiry)
        .set_text(22, "052")
        .set_text(25, "00")
        .set_text(32, PLAIN_ACQUIRER)
        .set_text(37, format!("120000{stan}"))
        .set_text(41, "CPPLN001")
        .set_text(42, PLAIN_MERCHANT)
        .set_text(49, "156");
    message
}

async fn reissued_card_keeps_its_token(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app, "CPPOS001").await;
    let mut phone = phone(&app, HUAWEI, "mate", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    assert_eq!(
        code(&shop.tap(&mut phone, "10.00", None, false).await),
        "00"
    );
    let body = "622609000000010";
    let new_number = format!(
        "{body}{}",
        char::from(luhn_check_digit(body.as_bytes()).unwrap())
    );
    assert_eq!(new_number.len(), 16);
    let (status, answer) = app
        .bank()
        .reissue(CMB_DEBIT, Some(&new_number), "3112")
        .await
        .unwrap();
    assert!(status.is_success(), "{answer}");
    // The same token now pays from the new card number (the same account).
    let after = shop.tap(&mut phone, "10.00", None, false).await;
    assert_eq!(code(&after), "00", "{after:?}");
    assert_eq!(balance(&app, &new_number).await, start - 2000);
    app.stop().await;
}

async fn cryptograms_are_checked(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app, "CPPOS001").await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let amount = cny("30.00");

    // A tampered cryptogram.
    let tap = phone.tap(&shop.pos.terminal_data(amount), false).unwrap();
    let mut tampered = tap.field55.clone();
    let at = tampered
        .windows(3)
        .position(|w| w == [0x9F, 0x26, 0x08])
        .unwrap()
        + 3;
    tampered[at] ^= 0x01;
    let outcome = shop
        .pos
        .purchase(&Purchase {
            account: phone.token(),
            expiry: Some(phone.expiry()),
            amount,
            field55: &tampered,
            presentment: Presentment::Contactless {
                track2: &tap.track2,
            },
            pin: None,
        })
        .await
        .unwrap();
    assert_eq!(code(&outcome), "63", "{outcome:?}");

    // A genuine one, approved, then replayed in a new message: the ATC is stale.
    let tap = phone.tap(&shop.pos.terminal_data(amount), false).unwrap();
    let purchase = Purchase {
        account: phone.token(),
        expiry: Some(phone.expiry()),
        amount,
        field55: &tap.field55,
        presentment: Presentment::Contactless {
            track2: &tap.track2,
        },
        pin: None,
    };
    assert_eq!(code(&shop.pos.purchase(&purchase).await.unwrap()), "00");
    let replay = shop.pos.purchase(&purchase).await.unwrap();
    assert_eq!(code(&replay), "63", "{replay:?}");

    // The amount in field 4 must be the amount the cryptogram covers.
    let tap = phone.tap(&shop.pos.terminal_data(amount), false).unwrap();
    let cheaper = shop
        .pos
        .purchase(&Purchase {
            account: phone.token(),
            expiry: Some(phone.expiry()),
            amount: cny("3.00"),
            field55: &tap.field55,
            presentment: Presentment::Contactless {
                track2: &tap.track2,
            },
            pin: None,
        })
        .await
        .unwrap();
    assert_eq!(code(&cheaper), "63", "{cheaper:?}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 3000);
    app.stop().await;
}

async fn in_app_payments(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app, "CPPOS003").await;
    let mut phone = phone(&app, QUICKPASS, "android", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    // The debit product's online no-PIN limit is 500.00 (from the card profile).
    assert_eq!(phone.online_no_pin_limit(), Some(cny("500.00")));
    let small = shop.in_app(&mut phone, "99.00", None).await;
    assert_eq!(code(&small), "00", "{small:?}");
    let big = shop.in_app(&mut phone, "800.00", None).await;
    assert_eq!(
        code(&big),
        "65",
        "above the online limit the password is needed: {big:?}"
    );
    let with_password = shop.in_app(&mut phone, "800.00", Some("111101")).await;
    assert_eq!(code(&with_password), "00", "{with_password:?}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 9900 - 80_000);

    // The tap's cryptogram sent as e-commerce without the device cryptogram's ECI: a device
    // token is never a card number typed into a web page.
    let amount = cny("15.00");
    let tap = phone.tap(&shop.pos.terminal_data(amount), false).unwrap();
    let mut request = Message::new(Mti::FINANCIAL_REQUEST);
    let mut field60 = Positional::new(60, FIELD_60);
    field60.set("60.1", "0000").unwrap();
    request
        .set_text(2, phone.token().expose())
        .set_text(3, "000000")
        .set_text(4, "000000001500")
        .set_text(7, "1125130000")
        .set_text(11, "000042")
        .set_text(14, phone.expiry().to_wire())
        .set_text(18, "5411")
        .set_text(22, "012")
        .set_text(25, "42")
        .set_text(32, PLAIN_ACQUIRER)
        .set_text(37, "130000000042")
        .set_text(41, "CPPLN002")
        .set_text(42, PLAIN_MERCHANT)
        .set_text(49, "156")
        .set(55, tap.field55.clone())
        .set_text(60, field60.to_string());
    let answer = app.running.switch.handle(&request).await;
    assert_eq!(answer.get_str(39), Some("05"));
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 9900 - 80_000);
    app.stop().await;
}

async fn funds_duplicates_and_reversals(backend: Backend) {
    let (app, clock) = TestApp::start_on_manual_clock(backend, |_| {}).await;
    let shop = Shop::open(&app, "CPPOS005").await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", PINGAN_DEBIT).await;
    let start = balance(&app, PINGAN_DEBIT).await;
    assert_eq!(start, 500_000);
    let poor = shop.tap(&mut phone, "6000.00", Some("123456"), false).await;
    assert_eq!(code(&poor), "51", "{poor:?}");

    // The same message twice: the second is a duplicate and moves nothing.
    let amount = cny("40.00");
    let tap = phone.tap(&shop.pos.terminal_data(amount), false).unwrap();
    let mut request = Message::new(Mti::FINANCIAL_REQUEST);
    let mut field60 = Positional::new(60, FIELD_60);
    field60.set("60.1", "0000").unwrap();
    request
        .set_text(2, phone.token().expose())
        .set_text(3, "000000")
        .set_text(4, "000000004000")
        .set_text(7, "1125140000")
        .set_text(11, "000314")
        .set_text(14, phone.expiry().to_wire())
        .set_text(18, "5411")
        .set_text(22, "072")
        .set_text(25, "00")
        .set_text(32, PLAIN_ACQUIRER)
        .set_text(35, tap.track2.clone())
        .set_text(37, "140000000314")
        .set_text(41, "CPPLN003")
        .set_text(42, PLAIN_MERCHANT)
        .set_text(49, "156")
        .set(55, tap.field55.clone())
        .set_text(60, field60.to_string());
    let mut anonymous = request.clone();
    anonymous.remove(11);
    assert_eq!(
        app.running.switch.handle(&anonymous).await.get_str(39),
        Some("30"),
        "a message without a STAN cannot be journaled"
    );
    let first = app.running.switch.handle(&request).await;
    assert_eq!(first.get_str(39), Some("00"));
    let again = app.running.switch.handle(&request).await;
    assert_eq!(again.get_str(39), Some("94"));
    assert_eq!(balance(&app, PINGAN_DEBIT).await, start - 4000);
    // The answer carries the token, never the card number.
    assert_eq!(first.get_str(2), request.get_str(2));

    // The acquirer reverses it (field 90): the switch acknowledges and the issuer undoes
    // it once, however often the reversal is sent.
    let mut reversal = Message::new(Mti::REVERSAL_REQUEST);
    for field in [2, 3, 4, 32, 37, 41, 42, 49] {
        reversal.set(field, request.get(field).unwrap().to_vec());
    }
    reversal
        .set_text(7, "1125140100")
        .set_text(11, "000315")
        .set_text(90, "020000031411251400000004802100000000000000");
    let acknowledged = app.running.switch.handle(&reversal).await;
    assert_eq!(acknowledged.get_str(39), Some("00"));
    let repeated = app.running.switch.handle(&reversal).await;
    assert_eq!(repeated.get_str(39), Some("00"));
    assert_eq!(drain_advices(&app, &clock).await, 1, "one reversal advice");
    assert_eq!(balance(&app, PINGAN_DEBIT).await, start);
    // A reversal of something never seen: 25.
    reversal
        .set_text(11, "000316")
        .set_text(90, "020000099911251400000004802100000000000000");
    assert_eq!(
        app.running.switch.handle(&reversal).await.get_str(39),
        Some("25")
    );
    assert_eq!(drain_advices(&app, &clock).await, 0, "nothing to reverse");
    assert_eq!(balance(&app, PINGAN_DEBIT).await, start);
    app.stop().await;
}

/// Store and forward run pass after pass, the clock moved past the longest backoff between
/// them, until no advice is left unacknowledged: how many the issuer acknowledged.
async fn drain_advices(app: &TestApp, clock: &ManualClock) -> usize {
    use cloudpass_store::BacklogStore;
    let mut acknowledged = 0;
    for _ in 0..20 {
        acknowledged += app.run_workers().await.advices.acknowledged;
        let backlogs = app.running.tsp.store().backlogs().await.unwrap();
        if backlogs.store_and_forward.pending == 0 {
            return acknowledged;
        }
        clock.advance(SwitchConfig::default().saf_max_backoff.as_millis() as i64);
    }
    panic!("store and forward still holds advices after 20 passes");
}

/// Waits until the switch's link to the issuer is up again (it reconnects by itself).
async fn wait_linked(app: &TestApp) {
    for _ in 0..300 {
        if app.running.switch.issuer_link_up().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the switch's issuer link did not come back");
}

async fn issuer_timeout_reverses_once(backend: Backend) {
    let clock = manual_clock();
    let (app, proxy) = with_fault_proxy(backend, |config| workers_by_hand(config, &clock)).await;
    let shop = Shop::open(&app, "CPPOS007").await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let (posted_before, _) = app.bank().ledger_totals().await.unwrap();
    proxy.lose_answers();
    // The issuer approves and posts, but its answer is lost: the switch answers 68 and
    // queues a reversal advice. The issuer receives it (and every repetition) but no
    // acknowledgement comes back, so the switch keeps repeating it.
    let outcome = shop.tap(&mut phone, "25.00", None, false).await;
    assert_eq!(code(&outcome), "68", "{outcome:?}");
    let advice_id = format!(
        "0420:0200:{}:{}:{}",
        cloudpass::sandbox::ACQUIRER_ID,
        outcome.stan,
        outcome.transmission_time
    );
    let store = app.running.tsp.store();
    for _ in 0..3 {
        clock.advance(SwitchConfig::default().saf_max_backoff.as_millis() as i64);
        let pass = app.run_workers().await.advices;
        assert_eq!(
            (pass.acknowledged, pass.retried),
            (0, 1),
            "answer lost: retried"
        );
    }
    let pending = store.saf_entry(&advice_id).await.unwrap().unwrap();
    assert!(pending.attempts >= 3, "{pending:?}");
    assert_eq!(pending.acknowledged_at, None);
    proxy.pass().await;
    wait_linked(&app).await;
    clock.advance(SwitchConfig::default().saf_max_backoff.as_millis() as i64);
    assert_eq!(drain_advices(&app, &clock).await, 1);
    let done = store.saf_entry(&advice_id).await.unwrap().unwrap();
    assert_eq!(done.response_code.as_deref(), Some("00"), "{done:?}");
    // Posted once, reversed once, however many times the advice was sent.
    assert_eq!(balance(&app, CMB_DEBIT).await, start);
    let (posted_after, _) = app.bank().ledger_totals().await.unwrap();
    assert_eq!(posted_after - posted_before, 2 * 2500);
    // And the network works again.
    assert_eq!(
        code(&shop.tap(&mut phone, "25.00", None, false).await),
        "00"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 2500);
    app.stop().await;
}

async fn terminal_timeout_reverses_once(backend: Backend) {
    // The terminal gives up before the switch does: it reverses (0400), the switch takes the
    // reversal into store and forward, and the issuer undoes the purchase once — although the
    // switch's own timeout asks for the same reversal.
    let clock = manual_clock();
    let (app, proxy) = with_fault_proxy(backend, |config| workers_by_hand(config, &clock)).await;
    let impatient = Shop::open_with(
        &app,
        "CPPOS011",
        cloudpass::sandbox::MERCHANT_CATEGORY,
        Duration::from_millis(150),
    )
    .await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let (posted_before, _) = app.bank().ledger_totals().await.unwrap();
    proxy.lose_answers();
    let outcome = impatient.tap(&mut phone, "42.00", None, false).await;
    assert_eq!(outcome.response_code, None, "{outcome:?}");
    assert_eq!(
        outcome.reversal.as_deref(),
        Some("00"),
        "the switch acknowledges the terminal's reversal: {outcome:?}"
    );
    let advice_id = format!(
        "0420:0200:{}:{}:{}",
        cloudpass::sandbox::ACQUIRER_ID,
        outcome.stan,
        outcome.transmission_time
    );
    // The switch's own wait for the issuer ends too (a real timeout on the link): its
    // journal answers 68, and the reversal it asks for is the one already queued.
    let store = app.running.tsp.store();
    let journal_id = format!(
        "0200:{}:{}:{}",
        cloudpass::sandbox::ACQUIRER_ID,
        outcome.stan,
        outcome.transmission_time
    );
    let mut answered = None;
    for _ in 0..200 {
        answered = store
            .journal_entry(&journal_id)
            .await
            .unwrap()
            .and_then(|entry| entry.response_code);
        if answered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answered.as_deref(), Some("68"));
    proxy.pass().await;
    wait_linked(&app).await;
    assert_eq!(drain_advices(&app, &clock).await, 1, "one reversal");
    let advice = store.saf_entry(&advice_id).await.unwrap().unwrap();
    assert_eq!(advice.response_code.as_deref(), Some("00"), "{advice:?}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start);
    let (posted_after, _) = app.bank().ledger_totals().await.unwrap();
    assert_eq!(
        posted_after - posted_before,
        2 * 4200,
        "posted once, reversed once"
    );
    app.stop().await;
}

async fn issuer_down_declines_or_stands_in(backend: Backend) {
    // Declined while the issuer is unreachable.
    let clock = manual_clock();
    let (app, proxy) = with_fault_proxy(backend, |config| workers_by_hand(config, &clock)).await;
    let shop = Shop::open(&app, "CPPOS008").await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    go_down(&app, &proxy).await;
    let outcome = shop.tap(&mut phone, "25.00", None, false).await;
    assert_eq!(code(&outcome), "91", "{outcome:?}");
    proxy.pass().await;
    wait_linked(&app).await;
    assert_eq!(
        drain_advices(&app, &clock).await,
        0,
        "a decline queues nothing"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start);
    app.stop().await;

    // With stand-in up to 100.00: approved on the issuer's behalf, posted later by advice.
    let clock = manual_clock();
    let (app, proxy) = with_fault_proxy(backend, |config| {
        workers_by_hand(config, &clock);
        config.switch.stand_in = StandInPolicy::ApproveUpTo(10_000);
    })
    .await;
    let shop = Shop::open(&app, "CPPOS008").await;
    let mut phone = support::network::phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    go_down(&app, &proxy).await;
    let small = shop.tap(&mut phone, "60.00", None, false).await;
    assert_eq!(code(&small), "00", "stand-in approval: {small:?}");
    let big = shop.tap(&mut phone, "160.00", None, false).await;
    assert_eq!(code(&big), "91", "over the stand-in limit: {big:?}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start);
    proxy.pass().await;
    wait_linked(&app).await;
    assert_eq!(
        drain_advices(&app, &clock).await,
        1,
        "the stand-in's advice, once"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 6000);
    app.stop().await;
}

async fn go_down(app: &TestApp, proxy: &FaultProxy) {
    proxy.go_down();
    for _ in 0..200 {
        if !app.running.switch.issuer_link_up().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the switch did not notice the issuer going down");
}

async fn hce_phone_replenishes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app, "CPPOS010").await;
    let keys = app.device(QUICKPASS, "hce-phone", "hce").await;
    let (status, body) = app
        .provision(QUICKPASS, "hce-phone", CMB_DEBIT, "2912", None)
        .await;
    assert_eq!(status, 201, "{body}");
    let token_id = body["token"]["token_id"].as_str().unwrap().to_owned();
    let mut phone = cloudpass_sim::phone::Phone::provision(
        &keys,
        &token_id,
        &cloudpass_sim::phone::envelope_from_json(&body["card_profile"]).unwrap(),
    )
    .unwrap();
    let start = balance(&app, CMB_DEBIT).await;
    let batch = phone.keys_left().unwrap();
    for _ in 0..batch {
        assert_eq!(code(&shop.tap(&mut phone, "1.00", None, false).await), "00");
    }
    assert_eq!(phone.keys_left(), Some(0));
    // Out of keys: the phone asks the token service for more.
    let (status, body) = app
        .post(
            QUICKPASS,
            &format!("/tsp/v1/tokens/{token_id}/keys"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    phone
        .replenish(
            &keys,
            &cloudpass_sim::phone::envelope_from_json(&body["card_profile"]).unwrap(),
        )
        .unwrap();
    assert_eq!(code(&shop.tap(&mut phone, "1.00", None, false).await), "00");
    assert_eq!(
        balance(&app, CMB_DEBIT).await,
        start - 100 * (i64::try_from(batch).unwrap() + 1)
    );
    app.stop().await;
}

async fn ecash_loads_spends_offline_and_clears_once(backend: Backend) {
    let (app, clock) = TestApp::start_on_manual_clock(backend, |_| {}).await;
    let shop = Shop::open(&app, "CPPOS013").await;
    let keys = app.device(APPLE, "iphone", "handset_se").await;
    let (status, body) = app
        .post(
            APPLE,
            "/tsp/v1/tokens",
            json!({"device_id": "iphone", "account_id": cloudpass::sandbox::ACCOUNT_ID,
                   "card": {"number": CMB_DEBIT, "expiry": "2912"}, "ecash": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token_id = body["token"]["token_id"].as_str().unwrap().to_owned();
    let mut phone = cloudpass_sim::phone::Phone::provision(
        &keys,
        &token_id,
        &cloudpass_sim::phone::envelope_from_json(&body["card_profile"]).unwrap(),
    )
    .unwrap();
    assert_eq!(phone.ecash_balance(), Some(cny("0.00")));
    let start = balance(&app, CMB_DEBIT).await;
    let issuer = &app.bank();

    // 圈存: a load from the account needs the password.
    let load = |phone: &mut cloudpass_sim::phone::Phone, amount: &str| {
        let amount = cny(amount);
        let cryptogram = phone
            .in_app(&shop.pos.terminal_data(amount), false)
            .unwrap();
        (amount, cryptogram.field55)
    };
    let (amount, field55) = load(&mut phone, "100.00");
    let without = shop
        .pos
        .load_ecash(&Purchase {
            account: phone.token(),
            expiry: Some(phone.expiry()),
            amount,
            field55: &field55,
            presentment: Presentment::InApp,
            pin: None,
        })
        .await
        .unwrap();
    assert_eq!(code(&without), "65", "{without:?}");
    let (amount, field55) = load(&mut phone, "100.00");
    let pin = cloudpass_crypto::Pin::parse("111101").unwrap();
    let loaded = shop
        .pos
        .load_ecash(&Purchase {
            account: phone.token(),
            expiry: Some(phone.expiry()),
            amount,
            field55: &field55,
            presentment: Presentment::InApp,
            pin: Some(&pin),
        })
        .await
        .unwrap();
    assert_eq!(code(&loaded), "00", "{loaded:?}");
    phone.credit_ecash(amount).unwrap();
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 10_000);
    assert_eq!(issuer.ecash_balance(CMB_DEBIT).await.unwrap(), 10_000);

    // Offline: the phone approves from its e-cash; nothing goes online.
    let mut batch = Vec::new();
    for amount in ["30.00", "50.00"] {
        let spend = phone
            .offline_tap(&shop.pos.terminal_data(cny(amount)))
            .unwrap();
        batch.push(
            shop.pos
                .offline_advice(phone.token(), phone.expiry(), &spend)
                .unwrap(),
        );
    }
    assert_eq!(phone.ecash_balance(), Some(cny("20.00")));
    assert!(matches!(
        phone.offline_tap(&shop.pos.terminal_data(cny("30.00"))),
        Err(cloudpass_sim::phone::PhoneError::EcashInsufficient { .. })
    ));
    assert_eq!(issuer.ecash_balance(CMB_DEBIT).await.unwrap(), 10_000);

    // The acquirer uploads the batch: cleared from the e-cash account, once.
    let answers = shop.pos.upload(&batch).await;
    assert_eq!(answers, vec![Some("00".to_owned()), Some("00".to_owned())]);
    assert_eq!(
        drain_advices(&app, &clock).await,
        2,
        "both spends forwarded"
    );
    assert_eq!(issuer.ecash_balance(CMB_DEBIT).await.unwrap(), 2_000);
    // The same batch again, and the same spend under a new STAN: nothing moves.
    assert_eq!(
        shop.pos.upload(&batch).await,
        vec![Some("00".to_owned()), Some("00".to_owned())]
    );
    let mut renumbered = batch[0].clone();
    renumbered.set_text(11, "999999");
    assert_eq!(
        shop.pos.upload(&[renumbered]).await,
        vec![Some("00".to_owned())]
    );
    // A spend whose amount was changed after the phone signed it is refused.
    let spend = phone
        .offline_tap(&shop.pos.terminal_data(cny("10.00")))
        .unwrap();
    let mut forged = shop
        .pos
        .offline_advice(phone.token(), phone.expiry(), &spend)
        .unwrap();
    forged.set_text(4, "000000000900");
    assert_eq!(
        shop.pos.upload(&[forged]).await,
        vec![Some("63".to_owned())]
    );
    drain_advices(&app, &clock).await;
    assert_eq!(issuer.ecash_balance(CMB_DEBIT).await.unwrap(), 2_000);
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 10_000);
    app.stop().await;
}

async fn authorization_only_posts_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app, "CPPOS014").await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", PINGAN_DEBIT).await;
    let start = balance(&app, PINGAN_DEBIT).await;
    let amount = cny("200.00");
    let tap = phone.tap(&shop.pos.terminal_data(amount), false).unwrap();
    let mut request = Message::new(Mti::AUTHORIZATION_REQUEST);
    let mut field60 = Positional::new(60, FIELD_60);
    field60.set("60.1", "0000").unwrap();
    request
        .set_text(2, phone.token().expose())
        .set_text(3, "000000")
        .set_text(4, "000000020000")
        .set_text(7, "1125150000")
        .set_text(11, "000501")
        .set_text(14, phone.expiry().to_wire())
        .set_text(18, "5411")
        .set_text(22, "072")
        .set_text(25, "06")
        .set_text(32, PLAIN_ACQUIRER)
        .set_text(35, tap.track2.clone())
        .set_text(37, "150000000501")
        .set_text(41, "CPPLN004")
        .set_text(42, PLAIN_MERCHANT)
        .set_text(49, "156")
        .set(55, tap.field55.clone())
        .set_text(60, field60.to_string());
    let answer = app.running.switch.handle(&request).await;
    assert_eq!(answer.mti(), Mti::AUTHORIZATION_RESPONSE);
    assert_eq!(answer.get_str(39), Some("00"));
    assert!(answer.get_str(38).is_some(), "an approval code");
    assert_eq!(balance(&app, PINGAN_DEBIT).await, start, "nothing posted");
    // Its reversal undoes nothing, and says so.
    let mut reversal = Message::new(Mti::REVERSAL_REQUEST);
    for field in [2, 3, 4, 32, 37, 41, 42, 49] {
        reversal.set(field, request.get(field).unwrap().to_vec());
    }
    reversal
        .set_text(7, "1125150100")
        .set_text(11, "000502")
        .set_text(90, "010000050111251500000004802100000000000000");
    assert_eq!(
        app.running.switch.handle(&reversal).await.get_str(39),
        Some("00")
    );
    let store = app.running.tsp.store();
    let advice_id = "0420:0100:48021000:000501:1125150000";
    for _ in 0..200 {
        if store
            .saf_entry(advice_id)
            .await
            .unwrap()
            .is_some_and(|advice| advice.acknowledged_at.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let advice = store.saf_entry(advice_id).await.unwrap().unwrap();
    assert_eq!(advice.response_code.as_deref(), Some("00"), "{advice:?}");
    assert_eq!(balance(&app, PINGAN_DEBIT).await, start);
    app.stop().await;
}
