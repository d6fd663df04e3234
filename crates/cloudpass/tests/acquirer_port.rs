//! The switch's port against hostile and careless acquirers, as an outside acquirer found
//! them: senders nobody registered, messages without the MAC their acquirer requires, track
//! 2 naming another token, captured cryptograms replayed (also after a restart), messages
//! the codec refuses, the optional CUPS header, and floods of idle and half-sent connections
//! that must not lock a registered acquirer out. Each case checks the answer's field 39 and
//! that the issuer's ledger did not move.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use cloudpass::sandbox;
use cloudpass_core::AccountNumber;
use cloudpass_iso8583::emv_data::TerminalData;
use cloudpass_iso8583::framing::{CupsHeader, Framing};
use cloudpass_iso8583::private::{FIELD_60, Positional};
use cloudpass_iso8583::{Message, Mti, net, profile};
use cloudpass_sim::phone::Phone;
use support::app::*;
use support::network::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const PLAIN_ACQUIRER: &str = sandbox::PLAIN_ACQUIRER_ID;
const PLAIN_MERCHANT: &str = sandbox::PLAIN_MERCHANT_ID;
const PLAIN_TERMINAL: &str = sandbox::PLAIN_TERMINALS[0];

on_both_backends!(
    captured_cryptograms_stay_spent_after_a_restart,
    working_keys_survive_a_restart_and_a_reversal_answered_a0_signs_on_again,
    a_reversal_nobody_acknowledged_is_kept_and_sent_by_the_terminal_s_next_run,
    operators_see_answers_backlogs_and_readiness,
);

fn terminal_data(amount: i64) -> TerminalData {
    TerminalData {
        amount: u64::try_from(amount).unwrap(),
        other_amount: 0,
        country: 156,
        currency: 156,
        tvr: [0; 5],
        date: [0x26, 0x12, 0x02],
        transaction_type: 0,
        unpredictable_number: [0x1A, 0x2B, 0x3C, 0x4D],
    }
}

/// A contactless purchase of `amount` fen by `phone` at the plain acquirer's terminal.
fn tap_request(phone: &mut Phone, amount: i64, stan: &str) -> Message<'static> {
    let tap = phone.tap(&terminal_data(amount), false).unwrap();
    let mut field60 = Positional::new(60, FIELD_60);
    field60.set("60.1", "0000").unwrap();
    let mut request = Message::new(Mti::FINANCIAL_REQUEST);
    request
        .set_text(2, phone.token().expose())
        .set_text(3, "000000")
        .set_text(4, format!("{amount:012}"))
        .set_text(7, "1202101500")
        .set_text(11, stan)
        .set_text(14, phone.expiry().to_wire())
        .set_text(18, "5411")
        .set_text(22, "072")
        .set_text(25, "00")
        .set_text(32, PLAIN_ACQUIRER)
        .set_text(35, tap.track2.clone())
        .set_text(37, format!("120210{stan}"))
        .set_text(41, PLAIN_TERMINAL)
        .set_text(42, PLAIN_MERCHANT)
        .set_text(49, "156")
        .set(55, tap.field55.clone())
        .set_text(60, field60.to_string());
    request
}

async fn code_of(app: &TestApp, request: &Message<'_>) -> String {
    app.running
        .switch
        .handle(request)
        .await
        .get_str(39)
        .unwrap_or("none")
        .to_owned()
}

/// Item 2 and 3: only registered acquirers, merchants and terminals transact; a sandbox
/// acquirer that requires MACs gets them; track 2 must name the token of field 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unregistered_and_unauthenticated_senders_move_no_money() {
    let app = TestApp::start(Backend::Sqlite).await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let mut other = phone_on(&app, "ipad").await;
    let start = balance(&app, CMB_DEBIT).await;

    type Spoil = fn(&mut Message<'static>);
    let cases: [(&str, Spoil, &str); 5] = [
        ("no terminal (41)", |m| drop(m.remove(41)), "30"),
        ("no merchant (42)", |m| drop(m.remove(42)), "30"),
        (
            "unknown terminal",
            |m| {
                m.set_text(41, "NOTATERM");
            },
            "58",
        ),
        (
            "unknown merchant",
            |m| {
                m.set_text(42, "999999999999999");
            },
            "03",
        ),
        (
            "unknown acquirer",
            |m| {
                m.set_text(32, "99999999");
            },
            "03",
        ),
    ];
    for (index, (case, spoil, expected)) in cases.into_iter().enumerate() {
        let mut request = tap_request(&mut phone, 1200, &format!("00010{index}"));
        spoil(&mut request);
        assert_eq!(code_of(&app, &request).await, expected, "{case}");
    }
    assert_eq!(balance(&app, CMB_DEBIT).await, start, "nothing posted");

    // Track 2 of another token beside this token in field 2.
    let mut request = tap_request(&mut phone, 1200, "000200");
    let foreign = other.tap(&terminal_data(1200), false).unwrap();
    request.set_text(35, foreign.track2);
    assert_eq!(
        code_of(&app, &request).await,
        "30",
        "fields 2 and 35 disagree"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start);

    // The sandbox acquirer requires MACs: its terminal's message without one, or with a
    // wrong one, is refused A0 even after the terminal signed on.
    let shop = Shop::open(&app, "CPPOS003").await;
    let mut unmaced = tap_request(&mut phone, 1200, "000300");
    unmaced
        .set_text(32, sandbox::ACQUIRER_ID)
        .set_text(41, "CPPOS003")
        .set_text(42, sandbox::MERCHANT_ID);
    assert_eq!(code_of(&app, &unmaced).await, "A0", "no MAC");
    let mut forged = unmaced.clone();
    forged.set_text(11, "000301").set(64, vec![0x55; 8]);
    assert_eq!(code_of(&app, &forged).await, "A0", "a wrong MAC");
    assert_eq!(balance(&app, CMB_DEBIT).await, start);

    // The same terminal MACing as it should pays; the plain acquirer's terminal pays too.
    let paid = shop.tap(&mut phone, "12.00", None, false).await;
    assert_eq!(paid.response_code.as_deref(), Some("00"), "{paid:?}");
    let plain = tap_request(&mut phone, 1200, "000400");
    assert_eq!(code_of(&app, &plain).await, "00");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 2400);
    app.stop().await;
}

/// A second phone holding another card, for a foreign track 2.
async fn phone_on(app: &TestApp, device: &str) -> Phone {
    phone(app, HUAWEI, device, "handset_se", PINGAN_DEBIT).await
}

/// Item 4: the highest ATC accepted per token is kept in the store: a captured cryptogram
/// replayed under a new STAN is refused 63, before and after a restart.
async fn captured_cryptograms_stay_spent_after_a_restart(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let original = tap_request(&mut phone, 1500, "000001");
    assert_eq!(code_of(&app, &original).await, "00");
    let mut replay = original.clone();
    replay.set_text(11, "000002").set_text(37, "120210000002");
    assert_eq!(code_of(&app, &replay).await, "63", "replayed at once");

    let app = app.restart().await;
    replay.set_text(11, "000003").set_text(37, "120210000003");
    assert_eq!(
        code_of(&app, &replay).await,
        "63",
        "replayed after a restart"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 1500);
    // The phone's next cryptogram is fresh.
    let next = tap_request(&mut phone, 1500, "000004");
    assert_eq!(code_of(&app, &next).await, "00");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 3000);
    app.stop().await;
}

/// A terminal's working keys are kept wrapped in the store: a MACing terminal that signed on
/// before a switch restart pays after it without signing on again. A terminal whose keys the
/// switch no longer holds (another sign-on of its id replaced them) has its reversal answered
/// A0; it signs on again and repeats it, and the purchase is reversed.
async fn working_keys_survive_a_restart_and_a_reversal_answered_a0_signs_on_again(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let shop = Shop::open(&app, "CPPOS003").await;
    let paid = shop.tap(&mut phone, "12.00", None, false).await;
    assert_eq!(paid.response_code.as_deref(), Some("00"), "{paid:?}");

    let address = app.running.switch_addr;
    let app = app
        .restart_with(|config| config.switch_listen = address)
        .await;
    shop.wait_linked().await;
    let paid = shop.tap(&mut phone, "13.00", None, false).await;
    assert_eq!(
        paid.response_code.as_deref(),
        Some("00"),
        "the MAC under the keys of the sign-on before the restart: {paid:?}"
    );
    assert!(paid.mac_ok);
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 2500);

    let _other = Shop::open(&app, "CPPOS003").await;
    let reversed = shop
        .pos
        .terminal()
        .reverse_purchase(&paid.stan, &paid.transmission_time, cny("13.00"))
        .await;
    assert_eq!(reversed.as_deref(), Some("00"));
    // The reversal reaches the bank as a store-and-forward advice.
    let deadline = Instant::now() + Duration::from_secs(10);
    while balance(&app, CMB_DEBIT).await != start - 1200 {
        assert!(
            Instant::now() < deadline,
            "the reversal never reached the bank"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// Between a terminal and the switch: passes everything, then (`drop_answers`) only the
/// terminal's requests, then (`cut`) nothing at all — the switch as a terminal sees it when
/// the platform dies after deciding and stays down.
struct Interposer {
    address: SocketAddr,
    /// 0 pass, 1 drop the switch's answers, 2 drop everything.
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl Interposer {
    async fn start(switch: SocketAddr) -> Interposer {
        use std::sync::atomic::{AtomicU8, Ordering};
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        let mode = std::sync::Arc::new(AtomicU8::new(0));
        let shared = mode.clone();
        tokio::spawn(async move {
            while let Ok((terminal, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(switch).await else {
                    continue;
                };
                let (mut from_terminal, mut to_terminal) = terminal.into_split();
                let (mut from_switch, mut to_switch) = upstream.into_split();
                let (up, down) = (shared.clone(), shared.clone());
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    while let Ok(n @ 1..) = from_terminal.read(&mut buffer).await {
                        if up.load(Ordering::SeqCst) < 2
                            && to_switch.write_all(&buffer[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    while let Ok(n @ 1..) = from_switch.read(&mut buffer).await {
                        if down.load(Ordering::SeqCst) == 0
                            && to_terminal.write_all(&buffer[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        Interposer { address, mode }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The chaos spot check's "charged without a sale": a purchase is approved and posted but its
/// answer never reaches the terminal, and then the switch is gone for all the terminal's
/// reversal attempts. The terminal keeps the reversal on disk (STAN, time and amount only);
/// its next run — a new link, the same file — sends it before anything else, and the bank
/// gets the money back.
async fn a_reversal_nobody_acknowledged_is_kept_and_sent_by_the_terminal_s_next_run(
    backend: Backend,
) {
    use cloudpass_sim::pos::{FileReversals, PendingReversals};

    let app = TestApp::start(backend).await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let file = app
        .data_dir
        .join("terminals")
        .join("CPPOS003-reversals.json");
    let interposer = Interposer::start(app.running.switch_addr).await;
    let shop = Shop::open_at(
        &app,
        interposer.address,
        "CPPOS003",
        sandbox::MERCHANT_CATEGORY,
        Duration::from_millis(1500),
    )
    .await
    .keeping(std::sync::Arc::new(
        FileReversals::open(file.clone()).unwrap(),
    ));

    interposer.set(1);
    let tapping = tokio::spawn(async move {
        let outcome = shop.tap(&mut phone, "12.00", None, false).await;
        (outcome, shop, phone)
    });
    // The bank posts it; then the switch is gone before the terminal gives up waiting.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while balance(&app, CMB_DEBIT).await != start - 1200 {
        assert!(
            Instant::now() < deadline,
            "the purchase never reached the bank"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    interposer.set(2);
    let (outcome, _shop, phone) = tapping.await.unwrap();
    assert_eq!(outcome.response_code, None, "{outcome:?}");
    assert_eq!(outcome.reversal, None, "no reversal was acknowledged");
    let kept = FileReversals::open(file.clone()).unwrap().pending();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].stan.as_str(), kept[0].amount),
        (outcome.stan.as_str(), cny("12.00"))
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(CMB_DEBIT) && !text.contains(phone.token().expose()),
        "no card or token number is kept"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 1200);

    // The terminal's next run, straight to the switch, with the same file.
    let next = Shop::open(&app, "CPPOS003")
        .await
        .keeping(std::sync::Arc::new(
            FileReversals::open(file.clone()).unwrap(),
        ));
    let sent = next.pos.terminal().flush_reversals().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.as_deref(), Some("00"));
    assert!(FileReversals::open(file).unwrap().pending().is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while balance(&app, CMB_DEBIT).await != start {
        assert!(
            Instant::now() < deadline,
            "the reversal never reached the bank"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

async fn get_text(app: &TestApp, path: &str) -> (u16, String) {
    let response = app
        .http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// `/metrics` counts the switch's answers by MTI, code and channel with their latency, and
/// shows the issuer link, the database, the ports' connections and the backlogs; `/readyz` is 200 while everything
/// is up and 503, naming the issuer link, when the switch cannot reach the issuer.
async fn operators_see_answers_backlogs_and_readiness(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let shop = Shop::open(&app, "CPPOS003").await;
    for amount in ["12.00", "13.00"] {
        let paid = shop.tap(&mut phone, amount, None, false).await;
        assert_eq!(paid.response_code.as_deref(), Some("00"), "{paid:?}");
    }
    let (status, metrics) = get_text(&app, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "cloudpass_switch_answers_total{mti=\"0210\",code=\"00\",channel=\"contactless\"} 2\n",
        "cloudpass_database_up 1\n",
        "cloudpass_issuer_link_up 1\n",
        "cloudpass_backlog_pending{queue=\"store_and_forward\"} 0\n",
        "cloudpass_backlog_oldest_age_seconds{queue=\"merchant_notifications\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    assert!(metrics.contains("cloudpass_backlog_pending{queue=\"outbox\"} "));
    // The sign-ons (ours, and the sandbox's own terminals') are counted too, and timed.
    assert!(
        metrics
            .contains("cloudpass_switch_answers_total{mti=\"0810\",code=\"00\",channel=\"none\"} ")
    );
    let timed: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("cloudpass_switch_answer_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(timed >= 3, "{metrics}");
    // The shop's terminal holds its connection to the switch; this scrape is on the HTTP
    // port; nobody was refused.
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert!(value("cloudpass_connections_open{port=\"switch\"}") >= 1);
    assert!(value("cloudpass_connections_accepted_total{port=\"switch\"}") >= 1);
    assert!(value("cloudpass_connections_open{port=\"http\"}") >= 1);
    assert!(value("cloudpass_connections_max{port=\"switch\"}") > 1);
    assert_eq!(
        value("cloudpass_connections_refused_total{port=\"switch\",reason=\"all_full\"}"),
        0
    );
    assert!(!metrics.contains(CMB_DEBIT) && !metrics.contains(phone.token().expose()));
    let (status, ready) = get_text(&app, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["checks"]["issuer_link"], "up");

    // The issuer's port is gone: not ready, and why.
    let nowhere = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let dead = nowhere.local_addr().unwrap();
    drop(nowhere);
    let app = app
        .restart_with(|config| config.issuer_link_override = Some(dead))
        .await;
    let (status, body) = get_text(&app, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "not_ready");
    assert_eq!(
        body["message"],
        "the switch's link to the issuer is down; see /metrics and the logs"
    );
    assert_eq!(body["checks"]["database"], "up");
    let (_, metrics) = get_text(&app, "/metrics").await;
    assert!(
        metrics.contains("cloudpass_issuer_link_up 0\n"),
        "{metrics}"
    );
    app.stop().await;
}

async fn exchange(stream: &mut TcpStream, framing: &Framing, bytes: &[u8]) -> Option<Vec<u8>> {
    net::write_frame(stream, framing, None, bytes)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), net::read_frame(stream, framing))
        .await
        .expect("the switch answers or closes in time")
        .ok()
        .flatten()
        .map(|frame| frame.message)
}

/// Item 5: a message the codec refuses is answered 30 when the fields an acquirer matches
/// by (MTI, 7, 11, 32) can be read; otherwise the connection is closed. A frame with the
/// CUPS header is served, and its answer carries the header back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_messages_are_answered_or_closed_and_cups_headers_are_served() {
    let app = TestApp::start(Backend::Sqlite).await;
    let framing = Framing::default();
    let mut stream = TcpStream::connect(app.running.switch_addr).await.unwrap();

    let mut message = Message::new(Mti::FINANCIAL_REQUEST);
    message
        .set_text(7, "1202101500")
        .set_text(11, "000777")
        .set_text(32, PLAIN_ACQUIRER)
        .set_text(41, PLAIN_TERMINAL);
    let mut broken = profile::cloudpass().encode(&message).unwrap();
    broken.truncate(broken.len() - 3); // field 41 cut short
    let answer = exchange(&mut stream, &framing, &broken).await.unwrap();
    let answer = profile::cloudpass().decode(&answer).unwrap();
    assert_eq!(answer.mti().as_str(), "0210");
    assert_eq!(answer.get_str(39), Some("30"));
    assert_eq!(answer.get_str(11), Some("000777"));
    assert_eq!(answer.get_str(7), Some("1202101500"));
    assert_eq!(answer.get_str(32), Some(PLAIN_ACQUIRER));

    // Nothing to match by: the connection is closed.
    assert_eq!(exchange(&mut stream, &framing, b"XXXXgarbage").await, None);

    // The CUPS header, optional on this port.
    let mut stream = TcpStream::connect(app.running.switch_addr).await.unwrap();
    let mut echo = Message::new(Mti::NETWORK_REQUEST);
    echo.set_text(7, "1202101501")
        .set_text(11, "000778")
        .set_text(32, PLAIN_ACQUIRER)
        .set_text(70, "301");
    let header = CupsHeader::new(PLAIN_ACQUIRER, "00010000", true);
    let bytes = profile::cloudpass().encode(&echo).unwrap();
    net::write_frame(&mut stream, &framing, Some(&header), &bytes)
        .await
        .unwrap();
    let with_header = Framing {
        cups_header: true,
        ..Framing::default()
    };
    let frame = tokio::time::timeout(
        Duration::from_secs(5),
        net::read_frame(&mut stream, &with_header),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(frame.header, Some(header.reply()));
    let answer = profile::cloudpass().decode(&frame.message).unwrap();
    assert_eq!(answer.mti().as_str(), "0810");
    assert_eq!(answer.get_str(39), Some("00"));
    app.stop().await;
}

/// Opens a connection from `source` (a loopback address of its own, so that the switch's
/// per-address limit applies to it and not to the registered acquirer on 127.0.0.1).
async fn connect_from(source: Ipv4Addr, target: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((source, 0))).ok()?;
    tokio::time::timeout(Duration::from_secs(2), socket.connect(target))
        .await
        .ok()?
        .ok()
}

/// Whether the switch has closed `stream` (reads end of stream, or an error).
async fn closed_by_switch(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(stream, &mut byte)
        )
        .await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Item 1, per address and in time: one address gets its share of connections (64) and no
/// more, and a connection that never speaks for a registered terminal is closed once its
/// admission time has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_gets_its_share_and_silent_connections_are_closed() {
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.switch_port.admission = Duration::from_secs(1);
    })
    .await;
    let target = app.running.switch_addr;
    let mut share = Vec::new();
    for _ in 0..64 {
        share.push(
            connect_from(Ipv4Addr::new(127, 0, 3, 1), target)
                .await
                .unwrap(),
        );
    }
    let mut over = connect_from(Ipv4Addr::new(127, 0, 3, 1), target)
        .await
        .unwrap();
    assert!(closed_by_switch(&mut over).await, "the 65th is refused");
    let began = Instant::now();
    assert!(
        closed_by_switch(&mut share[0]).await,
        "a silent one is closed"
    );
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );
    // An echo does not admit a connection either.
    let mut echoing = connect_from(Ipv4Addr::new(127, 0, 3, 2), target)
        .await
        .unwrap();
    let mut echo = Message::new(Mti::NETWORK_REQUEST);
    echo.set_text(7, "1202101501")
        .set_text(11, "000778")
        .set_text(32, PLAIN_ACQUIRER)
        .set_text(70, "301");
    let bytes = profile::cloudpass().encode(&echo).unwrap();
    assert!(
        exchange(&mut echoing, &Framing::default(), &bytes)
            .await
            .is_some()
    );
    assert!(
        closed_by_switch(&mut echoing).await,
        "closed after its admission time"
    );
    app.stop().await;
}

/// Item 1, the flood: 1,000 idle connections and 10,000 half-sent frames from other
/// addresses are opened and held against the switch; then a registered terminal signs on
/// and pays at once, and keeps paying while they are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_of_idle_and_half_sent_connections_do_not_lock_out_an_acquirer() {
    let app = TestApp::start(Backend::Sqlite).await;
    let target = app.running.switch_addr;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;

    // Each from one of many loopback addresses (a few connections each), held by the client.
    let mut held = Vec::with_capacity(11_000);
    for index in 0..11_000usize {
        let source = Ipv4Addr::new(127, 0, 10 + (index / 250) as u8, 1 + (index % 250) as u8);
        if let Some(mut stream) = connect_from(source, target).await {
            if index >= 1_000 {
                // A length of 300 and the start of an MTI, then nothing.
                let _ = stream.write_all(&[0x01, 0x2C, b'0', b'2']).await;
            }
            held.push(stream);
        }
    }
    let began = Instant::now();
    let shop = Shop::open(&app, "CPPOS007").await;
    let paid = shop.tap(&mut phone, "8.00", None, false).await;
    assert_eq!(paid.response_code.as_deref(), Some("00"), "{paid:?}");
    assert!(
        // Without the bounds the 256 slots were held for good and this never happened; the
        // bound here is loose only for a loaded CI machine.
        began.elapsed() < Duration::from_secs(10),
        "signed on and paid in {:?}",
        began.elapsed()
    );
    // More of the same while the acquirer is connected: it is admitted and stays.
    for index in 0..2_000usize {
        let source = Ipv4Addr::new(127, 0, 60 + (index / 250) as u8, 1 + (index % 250) as u8);
        if let Some(stream) = connect_from(source, target).await {
            held.push(stream);
        }
    }
    let again = shop.tap(&mut phone, "9.00", None, false).await;
    assert_eq!(again.response_code.as_deref(), Some("00"), "{again:?}");
    drop(held);
    app.stop().await;
}

/// Item 16: the published samples (`cloudpass iso8583 sample`) are messages the switch reads
/// through: registered sender, CP01 chip data. The sample's token is not one this sandbox
/// issued (tokens are random per data directory), so the answer is 14 — not 30 (format),
/// 58 (terminal) or A0 (MAC); with a live phone's token fields in place, it is approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_published_sample_gets_through_every_check_but_the_token() {
    let app = TestApp::start(Backend::Sqlite).await;
    let sample = cloudpass_iso8583::samples::contactless_purchase();
    assert!(
        cloudpass_iso8583::emv_data::ChipRequest::parse(sample.get(55).unwrap()).is_ok(),
        "the sample's field 55 is CP01"
    );
    assert_eq!(code_of(&app, &sample).await, "14");

    // With a live phone's token, expiry, track 2 and chip data in place of the sample's,
    // every other field as published, the switch approves it and the bank posts it.
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let tap = phone.tap(&terminal_data(1250), false).unwrap();
    let mut live = sample.clone();
    live.set_text(11, "000124") // another message than the one sent above
        .set_text(2, phone.token().expose())
        .set_text(14, phone.expiry().to_wire())
        .set_text(35, tap.track2)
        .set(55, tap.field55);
    assert_eq!(code_of(&app, &live).await, "00");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 1250);
    app.stop().await;
}
