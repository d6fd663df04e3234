//! Card-not-present payments end to end over real TCP: a terminal of the sandbox's
//! e-commerce acquirer sends a typed card number (60.3.6 = 7, no track or chip data) with
//! the CVN2 in 61.4 or a PIN block; the switch passes it to the issuer host, which checks the
//! CVN2 and expiry of a credit card or the PIN of a debit card and posts to its ledger. Each
//! scenario reads the issuer's balance after every step, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::time::Duration;

use cloudpass_core::Pan;
use cloudpass_iso8583::private::{FIELD_60, Positional};
use cloudpass_iso8583::{Message, Mti};
use cloudpass_sim::pos::{Outcome, ReturnKind};
use cloudpass_store::TokenStore;
use support::app::*;
use support::network::*;

on_both_backends!(
    credit_cards_need_their_cvn2_and_expiry,
    debit_cards_need_their_pin,
    only_ecommerce_acquirers_send_card_numbers,
    an_issuer_timeout_is_reversed_without_keeping_the_card_number,
    voids_and_refunds_are_posted_once,
);

const HUAXIA_CREDIT: &str = "6226388000000095";
const CMB_DEBIT_CARD: &str = "6226090000000048";

fn code(outcome: &cloudpass_sim::pos::Outcome) -> &str {
    outcome.response_code.as_deref().unwrap_or("none")
}

async fn credit_cards_need_their_cvn2_and_expiry(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open_ecommerce(&app, "CPWEB001", Duration::from_secs(5)).await;
    let start = balance(&app, HUAXIA_CREDIT).await;

    let paid = shop
        .card_not_present(HUAXIA_CREDIT, Some("2912"), "100.00", Some("248"), None)
        .await;
    assert_eq!(code(&paid), "00", "{paid:?}");
    assert!(paid.auth_code.is_some() && paid.mac_ok);
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start - 10_000);

    for (expiry, cvn2, expected, why) in [
        (Some("2912"), Some("249"), "N7", "a wrong CVN2"),
        (Some("2912"), None, "N7", "no CVN2"),
        (Some("2812"), Some("248"), "54", "a wrong expiry"),
        (None, Some("248"), "54", "no expiry"),
    ] {
        let declined = shop
            .card_not_present(HUAXIA_CREDIT, expiry, "100.00", cvn2, None)
            .await;
        assert_eq!(code(&declined), expected, "{why}: {declined:?}");
    }
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start - 10_000);
    app.stop().await;
}

async fn debit_cards_need_their_pin(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open_ecommerce(&app, "CPWEB002", Duration::from_secs(5)).await;
    let start = balance(&app, CMB_DEBIT_CARD).await;

    let no_pin = shop
        .card_not_present(CMB_DEBIT_CARD, None, "30.00", None, None)
        .await;
    assert_eq!(
        code(&no_pin),
        "65",
        "a debit card without its PIN: {no_pin:?}"
    );
    let wrong = shop
        .card_not_present(CMB_DEBIT_CARD, None, "30.00", None, Some("999999"))
        .await;
    assert_eq!(code(&wrong), "55", "{wrong:?}");
    assert_eq!(balance(&app, CMB_DEBIT_CARD).await, start);

    let paid = shop
        .card_not_present(CMB_DEBIT_CARD, None, "30.00", None, Some("111101"))
        .await;
    assert_eq!(code(&paid), "00", "{paid:?}");
    assert_eq!(balance(&app, CMB_DEBIT_CARD).await, start - 3_000);
    // Above the card's daily limit: the issuer's own rules apply as to any payment.
    let over = shop
        .card_not_present(CMB_DEBIT_CARD, None, "99999.00", None, Some("111101"))
        .await;
    assert_eq!(code(&over), "61", "{over:?}");
    assert_eq!(balance(&app, CMB_DEBIT_CARD).await, start - 3_000);
    app.stop().await;
}

async fn only_ecommerce_acquirers_send_card_numbers(backend: Backend) {
    let app = TestApp::start(backend).await;
    let start = balance(&app, HUAXIA_CREDIT).await;
    // The sandbox's POS acquirer may send tokens only.
    let pos = Shop::open(&app, "CPPOS009").await;
    let refused = pos
        .card_not_present(HUAXIA_CREDIT, Some("2912"), "10.00", Some("248"), None)
        .await;
    assert_eq!(code(&refused), "58", "{refused:?}");

    // A card-not-present message carrying chip data is malformed: nothing reaches the issuer.
    let mut field60 = Positional::new(60, FIELD_60);
    field60.set("60.1", "0000").unwrap();
    field60.set("60.3.6", "7").unwrap();
    let mut request = Message::new(Mti::FINANCIAL_REQUEST);
    request
        .set_text(2, HUAXIA_CREDIT)
        .set_text(3, "000000")
        .set_text(4, "000000001000")
        .set_text(7, "1202140000")
        .set_text(11, "000777")
        .set_text(14, "2912")
        .set_text(18, "5999")
        .set_text(22, "012")
        .set_text(25, "42")
        .set_text(32, cloudpass::sandbox::PLAIN_ACQUIRER_ID)
        .set_text(37, "140000000777")
        .set_text(41, "CPPLN004")
        .set_text(42, cloudpass::sandbox::PLAIN_MERCHANT_ID)
        .set_text(49, "156")
        .set(55, vec![0x9F, 0x26, 0x01, 0x00])
        .set_text(60, field60.to_string());
    assert_eq!(
        app.running.switch.handle(&request).await.get_str(39),
        Some("30")
    );
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start);
    app.stop().await;
}

async fn an_issuer_timeout_is_reversed_without_keeping_the_card_number(backend: Backend) {
    let (app, proxy) = with_fault_proxy(backend, |_| {}).await;
    let shop = Shop::open_ecommerce(&app, "CPWEB003", Duration::from_secs(5)).await;
    let start = balance(&app, HUAXIA_CREDIT).await;
    proxy.lose_answers();
    // The issuer approves and posts; its answer is lost. No stand-in for a typed card: 68,
    // and a reversal advice that names only the original.
    let outcome = shop
        .card_not_present(HUAXIA_CREDIT, Some("2912"), "20.00", Some("248"), None)
        .await;
    assert_eq!(code(&outcome), "68", "{outcome:?}");
    let advice_id = format!(
        "0420:0200:{}:{}:{}",
        cloudpass::sandbox::ECOMMERCE_ACQUIRER_ID,
        outcome.stan,
        outcome.transmission_time
    );
    let store = app.running.tsp.store();
    let queued = wait_for(|| async { store.saf_entry(&advice_id).await.unwrap() }).await;
    assert_eq!(queued.token_number, "", "no card number rests in the queue");
    proxy.pass().await;
    for _ in 0..200 {
        let advice = store.saf_entry(&advice_id).await.unwrap().unwrap();
        if advice.acknowledged_at.is_some() {
            assert_eq!(advice.response_code.as_deref(), Some("00"), "{advice:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for _ in 0..200 {
        if balance(&app, HUAXIA_CREDIT).await == start {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        balance(&app, HUAXIA_CREDIT).await,
        start,
        "posted once, reversed once"
    );
    app.stop().await;
}

async fn wait_for<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("waited 5 s in vain");
}

/// Builds a return of `original` and sends it; the return too, to send it again.
async fn give_back(
    shop: &Shop,
    kind: ReturnKind,
    original: &Outcome,
    card: &str,
    amount: &str,
) -> (Outcome, cloudpass_sim::pos::CardReturn) {
    let pan = Pan::parse(card).unwrap();
    let terminal = shop.pos.terminal();
    let card_return = terminal
        .card_return(kind, original.into(), Some(&pan), cny(amount))
        .unwrap();
    (
        terminal.send_return(&card_return).await.unwrap(),
        card_return,
    )
}

async fn voids_and_refunds_are_posted_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open_ecommerce(&app, "CPWEB004", Duration::from_secs(5)).await;

    // A credit card purchase refunded in parts, never above what is left.
    let start = balance(&app, HUAXIA_CREDIT).await;
    let paid = shop
        .card_not_present(HUAXIA_CREDIT, Some("2912"), "100.00", Some("248"), None)
        .await;
    assert_eq!(code(&paid), "00");
    let (first, first_refund) =
        give_back(&shop, ReturnKind::Refund, &paid, HUAXIA_CREDIT, "30.00").await;
    assert_eq!(code(&first), "00", "{first:?}");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start - 7_000);
    // The same refund again (an acquirer that heard nothing repeats it): the same answer,
    // nothing posted twice.
    let again = shop
        .pos
        .terminal()
        .send_return(&first_refund)
        .await
        .unwrap();
    assert_eq!(code(&again), "00");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start - 7_000);
    let (too_much, _) = give_back(&shop, ReturnKind::Refund, &paid, HUAXIA_CREDIT, "70.01").await;
    assert_eq!(code(&too_much), "13", "above what is left");
    let (rest, _) = give_back(&shop, ReturnKind::Refund, &paid, HUAXIA_CREDIT, "70.00").await;
    assert_eq!(code(&rest), "00");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start);
    let (nothing_left, _) =
        give_back(&shop, ReturnKind::Refund, &paid, HUAXIA_CREDIT, "0.01").await;
    assert_eq!(code(&nothing_left), "25");
    let (late_void, _) = give_back(&shop, ReturnKind::Void, &paid, HUAXIA_CREDIT, "100.00").await;
    assert_eq!(
        code(&late_void),
        "25",
        "a refunded purchase cannot be voided"
    );
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start);

    // A debit card purchase voided on the day: the whole amount, once.
    let start = balance(&app, CMB_DEBIT_CARD).await;
    let paid = shop
        .card_not_present(CMB_DEBIT_CARD, None, "50.00", None, Some("111101"))
        .await;
    assert_eq!(code(&paid), "00");
    let (part, _) = give_back(&shop, ReturnKind::Void, &paid, CMB_DEBIT_CARD, "49.99").await;
    assert_eq!(code(&part), "13", "a void is for the whole amount");
    let (void, void_message) =
        give_back(&shop, ReturnKind::Void, &paid, CMB_DEBIT_CARD, "50.00").await;
    assert_eq!(code(&void), "00", "{void:?}");
    assert_eq!(balance(&app, CMB_DEBIT_CARD).await, start);
    assert_eq!(
        code(
            &shop
                .pos
                .terminal()
                .send_return(&void_message)
                .await
                .unwrap()
        ),
        "00"
    );
    let (second, _) = give_back(&shop, ReturnKind::Void, &paid, CMB_DEBIT_CARD, "50.00").await;
    assert_eq!(code(&second), "25");
    let (refund, _) = give_back(&shop, ReturnKind::Refund, &paid, CMB_DEBIT_CARD, "1.00").await;
    assert_eq!(code(&refund), "25", "a voided purchase cannot be refunded");
    assert_eq!(balance(&app, CMB_DEBIT_CARD).await, start);

    // Only e-commerce acquirers send returns, and only of their own card's purchases.
    let (other_card, _) = give_back(&shop, ReturnKind::Refund, &paid, HUAXIA_CREDIT, "1.00").await;
    assert_eq!(code(&other_card), "25");
    let pos = Shop::open(&app, "CPPOS010").await;
    let (refused, _) = give_back(&pos, ReturnKind::Refund, &paid, CMB_DEBIT_CARD, "1.00").await;
    assert_eq!(code(&refused), "58");
    assert_eq!(balance(&app, CMB_DEBIT_CARD).await, start);
    let (debits, credits) = app.bank().ledger_totals().await.unwrap();
    assert_eq!(debits, credits, "the books balance");
    app.stop().await;
}
