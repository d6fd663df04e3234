//! The issuer host's ISO 8583 side, black-box: financial requests, PINs, duplicates,
//! reversals, over its message handler and over TCP; after every test the ledger balances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use cloudpass_core::{Random, SeededRandom, SystemClock};
use cloudpass_crypto::primitives::{set_odd_parity, tdes_decrypt, tdes_encrypt};
use cloudpass_crypto::{MasterKey, Pin, pin};
use cloudpass_iso8583::framing::Framing;
use cloudpass_iso8583::private::OriginalData;
use cloudpass_iso8583::{Message, Mti, net, profile};
use cloudpass_sim::issuer_host::{IssuerHost, IssuerHostConfig, SimCard};

const DEBIT: &str = "6226090000000048";
const CREDIT: &str = "6226388000000095";

struct Bank {
    host: Arc<IssuerHost>,
    zpk: [u8; 16],
    dir: std::path::PathBuf,
}

fn fresh_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "cloudpass-issuer-iso-{}-{}",
        std::process::id(),
        SeededRandom::new(1).next_u64() ^ SystemClock.now_nanos()
    ))
}

async fn bank() -> Bank {
    bank_in(fresh_dir()).await
}

/// The bank with its files in `dir`.
async fn bank_in(dir: std::path::PathBuf) -> Bank {
    let random = Arc::new(SeededRandom::new(1));
    let host = IssuerHost::open(
        &dir.join("issuer.sqlite"),
        MasterKey::generate(random.as_ref()),
        IssuerHostConfig {
            issuer_id: "iss_test".into(),
            bank_name: "Test Bank".into(),
            shared_secret: b"secret".to_vec(),
            tsp_url: "http://127.0.0.1:9".into(),
            tsp_api_key: "key".into(),
            signature_tolerance_seconds: 300,
            extra_root: None,
            operator_key: "operator".into(),
        },
        Arc::new(SystemClock),
        random,
    )
    .await
    .unwrap();
    for (number, funding, pin, money) in [
        (DEBIT, "debit", "111101", 1_000_000),
        (CREDIT, "credit", "111111", 50_000),
    ] {
        host.add_card(&SimCard {
            number: number.into(),
            expiry: "2912".into(),
            cvn2: None,
            phone: "18100000000".into(),
            holder_name: "张三".into(),
            funding: funding.into(),
            product: funding.into(),
            provisioning: "green".into(),
            pin: Some(pin.into()),
            currency: 156,
            opening_balance: if funding == "debit" { money } else { 0 },
            credit_limit: if funding == "credit" { money } else { 0 },
            daily_limit: 2_000_000,
        })
        .await
        .unwrap();
    }
    // The switch's side of the key exchange: the zone PIN key arrives under the zone master key.
    let zmk_clear = [0x2Au8; 16];
    let zmk = host.import_zone_master_key(&zmk_clear).unwrap();
    let (encrypted, _) = host.export_zone_pin_key(zmk).unwrap();
    let mut odd = zmk_clear;
    set_odd_parity(&mut odd);
    let mut zpk = [0u8; 16];
    for (i, half) in encrypted.chunks_exact(8).enumerate() {
        zpk[i * 8..i * 8 + 8].copy_from_slice(&tdes_decrypt(&odd, &half.try_into().unwrap()));
    }
    Bank {
        host: Arc::new(host),
        zpk,
        dir,
    }
}

trait Nanos {
    fn now_nanos(&self) -> u64;
}

impl Nanos for SystemClock {
    fn now_nanos(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
}

fn purchase(card: &str, amount: u64, stan: &str) -> Message<'static> {
    let mut message = Message::new(Mti::FINANCIAL_REQUEST);
    message
        .set_text(2, card)
        .set_text(3, "000000")
        .set_text(4, format!("{amount:012}"))
        .set_text(7, "1125103000")
        .set_text(11, stan)
        .set_text(14, "2912")
        .set_text(22, "072")
        .set_text(25, "00")
        .set_text(32, "48020000")
        .set_text(37, format!("532918{stan}"))
        .set_text(41, "POS00001")
        .set_text(42, "898310048990001")
        .set_text(49, "156");
    message
}

fn with_pin(mut message: Message<'static>, bank: &Bank, card: &str, pin: &str) -> Message<'static> {
    let clear = pin::format0_encode(&Pin::parse(pin).unwrap(), card).unwrap();
    message.set(52, tdes_encrypt(&bank.zpk, &clear).to_vec());
    message
}

async fn code(bank: &Bank, message: &Message<'_>) -> String {
    bank.host
        .process(message)
        .await
        .get_str(39)
        .unwrap()
        .to_owned()
}

async fn assert_books_balance(bank: &Bank) {
    let (debits, credits) = bank.host.ledger_totals().await.unwrap();
    assert_eq!(debits, credits, "the ledger must balance");
}

#[tokio::test]
async fn purchases_duplicates_and_declines() {
    let bank = bank().await;
    let first = purchase(DEBIT, 1_250, "000001");
    let answer = bank.host.process(&first).await;
    assert_eq!(answer.mti(), Mti::FINANCIAL_RESPONSE);
    assert_eq!(answer.get_str(39), Some("00"));
    assert_eq!(answer.get_str(38).unwrap().len(), 6);
    assert_eq!(answer.get_str(11), Some("000001"));
    assert_eq!(
        bank.host.card_balance(DEBIT).await.unwrap().0,
        1_000_000 - 1_250
    );
    // The same message again: the same answer, nothing posted twice.
    let again = bank.host.process(&first).await;
    assert_eq!(
        (again.get_str(39), again.get_str(38)),
        (Some("00"), answer.get_str(38))
    );
    assert_eq!(
        bank.host.card_balance(DEBIT).await.unwrap().0,
        1_000_000 - 1_250
    );
    // Insufficient funds; a credit card within and beyond its limit.
    assert_eq!(
        code(&bank, &purchase(DEBIT, 1_000_000, "000002")).await,
        "51"
    );
    assert_eq!(code(&bank, &purchase(CREDIT, 50_000, "000003")).await, "00");
    assert_eq!(code(&bank, &purchase(CREDIT, 1, "000004")).await, "51");
    // Unknown card, wrong expiry.
    assert_eq!(
        code(&bank, &purchase("6226090000000055", 1, "000005")).await,
        "14"
    );
    let mut wrong_expiry = purchase(DEBIT, 1, "000006");
    wrong_expiry.set_text(14, "2811");
    assert_eq!(code(&bank, &wrong_expiry).await, "54");
    assert_books_balance(&bank).await;
    let _ = std::fs::remove_dir_all(&bank.dir);
}

#[tokio::test]
async fn a_deposit_pays_in_once_per_reference_and_a_declined_card_pays_again() {
    let bank = bank().await;
    assert_eq!(code(&bank, &purchase(CREDIT, 50_000, "000001")).await, "00");
    assert_eq!(code(&bank, &purchase(CREDIT, 300, "000002")).await, "51");
    let (status, paid) = bank.host.deposit(CREDIT, 500, "teller-1").await.unwrap();
    assert_eq!(status.as_u16(), 201);
    assert_eq!(
        (paid["balance"].as_i64(), paid["repeated"].as_bool()),
        (Some(-49_500), Some(false))
    );
    // The teller's retry after a lost answer moves nothing.
    let (status, again) = bank.host.deposit(CREDIT, 500, "teller-1").await.unwrap();
    assert_eq!(status.as_u16(), 200);
    assert_eq!(
        (again["balance"].as_i64(), again["repeated"].as_bool()),
        (Some(-49_500), Some(true))
    );
    assert_eq!(bank.host.card_balance(CREDIT).await.unwrap().0, -49_500);
    assert_eq!(code(&bank, &purchase(CREDIT, 300, "000003")).await, "00");
    // The reference for another amount or card is refused, and so is a bad amount; the
    // errors never name the card.
    for (card, amount, reference) in [
        (CREDIT, 600, "teller-1"),
        (DEBIT, 500, "teller-1"),
        (DEBIT, 0, "teller-2"),
        (DEBIT, 5, "no spaces"),
    ] {
        let refused = bank
            .host
            .deposit(card, amount, reference)
            .await
            .unwrap_err();
        assert!(!refused.to_string().contains(card), "{refused}");
    }
    assert_eq!(bank.host.card_balance(DEBIT).await.unwrap().0, 1_000_000);
    assert_books_balance(&bank).await;
    let _ = std::fs::remove_dir_all(&bank.dir);
}

#[tokio::test]
async fn pins_are_verified_and_blocked_after_three_wrong() {
    let bank = bank().await;
    assert_eq!(
        code(
            &bank,
            &with_pin(purchase(DEBIT, 100, "000010"), &bank, DEBIT, "111101")
        )
        .await,
        "00"
    );
    for (stan, expected) in [("000011", "55"), ("000012", "55"), ("000013", "75")] {
        assert_eq!(
            code(
                &bank,
                &with_pin(purchase(DEBIT, 100, stan), &bank, DEBIT, "999999")
            )
            .await,
            expected
        );
    }
    assert_eq!(
        bank.host.card_balance(DEBIT).await.unwrap(),
        (1_000_000 - 100, 3)
    );
    // Blocked: the right PIN no longer works.
    assert_eq!(
        code(
            &bank,
            &with_pin(purchase(DEBIT, 100, "000014"), &bank, DEBIT, "111101")
        )
        .await,
        "75"
    );
    // A block that is not a PIN block.
    let mut garbage = purchase(CREDIT, 100, "000015");
    garbage.set(52, vec![0xFF; 8]);
    assert_eq!(code(&bank, &garbage).await, "99");
    assert_books_balance(&bank).await;
    let _ = std::fs::remove_dir_all(&bank.dir);
}

fn reversal_of(original: &Message<'_>, stan: &str) -> Message<'static> {
    let mut reversal = Message::new(Mti::REVERSAL_REQUEST);
    for field in [2, 3, 4, 32, 37, 41, 42, 49] {
        reversal.set(field, original.get(field).unwrap().to_vec());
    }
    let data = OriginalData {
        mti: original.mti().as_str().into(),
        stan: original.get_str(11).unwrap().into(),
        transmission_time: original.get_str(7).unwrap().into(),
        acquirer: original.get_str(32).unwrap().into(),
        forwarder: String::new(),
    };
    reversal
        .set_text(7, "1125103100")
        .set_text(11, stan)
        .set_text(90, data.to_wire().unwrap());
    reversal
}

#[tokio::test]
async fn reversals_undo_once() {
    let bank = bank().await;
    let original = purchase(DEBIT, 5_000, "000020");
    assert_eq!(code(&bank, &original).await, "00");
    assert_eq!(bank.host.card_balance(DEBIT).await.unwrap().0, 995_000);
    let reversal = reversal_of(&original, "000021");
    let answer = bank.host.process(&reversal).await;
    assert_eq!(
        (answer.mti(), answer.get_str(39)),
        (Mti::REVERSAL_RESPONSE, Some("00"))
    );
    assert_eq!(bank.host.card_balance(DEBIT).await.unwrap().0, 1_000_000);
    // Repeated, or as an advice with another STAN: acknowledged, not posted again.
    assert_eq!(code(&bank, &reversal).await, "00");
    let mut advice = reversal_of(&original, "000022");
    advice.set_mti(Mti::REVERSAL_ADVICE);
    assert_eq!(
        bank.host.process(&advice).await.mti(),
        Mti::REVERSAL_ADVICE_RESPONSE
    );
    assert_eq!(bank.host.card_balance(DEBIT).await.unwrap().0, 1_000_000);
    // The original once more (a late duplicate) is answered from the record, not posted.
    assert_eq!(code(&bank, &original).await, "00");
    assert_eq!(bank.host.card_balance(DEBIT).await.unwrap().0, 1_000_000);
    // A reversal of something never seen.
    assert_eq!(
        code(&bank, &reversal_of(&purchase(DEBIT, 1, "000099"), "000023")).await,
        "25"
    );
    assert_books_balance(&bank).await;
    let _ = std::fs::remove_dir_all(&bank.dir);
}

/// The bank's ISO 8583 port on a fresh address: where it is, its stop switch, its task.
async fn serve(
    bank: &Bank,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(Arc::clone(&bank.host).serve_iso8583(listener, shutdown));
    (address, stop, server)
}

#[tokio::test]
async fn answers_over_tcp_with_many_messages_in_flight() {
    let bank = bank().await;
    let (address, stop, server) = serve(&bank).await;
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let framing = Framing::default();
    for index in 0..20 {
        let message = purchase(DEBIT, 100, &format!("{:06}", 100 + index));
        net::write_frame(
            &mut writer,
            &framing,
            None,
            &profile::cloudpass().encode(&message).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut stans = Vec::new();
    for _ in 0..20 {
        let frame = net::read_frame(&mut reader, &framing)
            .await
            .unwrap()
            .unwrap();
        let answer = profile::cloudpass().decode(&frame.message).unwrap();
        assert_eq!(answer.get_str(39), Some("00"));
        stans.push(answer.get_str(11).unwrap().to_owned());
    }
    stans.sort();
    assert_eq!(stans.len(), 20);
    assert_eq!(
        bank.host.card_balance(DEBIT).await.unwrap().0,
        1_000_000 - 2_000
    );
    let _ = stop.send(true);
    let _ = server.await;
    assert_books_balance(&bank).await;
    let _ = std::fs::remove_dir_all(&bank.dir);
}

/// The switch's link to the bank sends nothing while no one pays, and the bank's port must
/// keep it open: a link dropped after the port's default admission deadline (10 s) was
/// reconnected every 10.5 s, and a payment in the gap was refused.
#[tokio::test]
async fn a_quiet_link_from_the_switch_stays_open() {
    let bank = bank().await;
    let (address, stop, server) = serve(&bank).await;
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // An hour of silence on the port's clock.
    tokio::time::pause();
    tokio::time::advance(std::time::Duration::from_secs(3_600)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::resume();

    let framing = Framing::default();
    let message = purchase(DEBIT, 100, "000777");
    net::write_frame(
        &mut writer,
        &framing,
        None,
        &profile::cloudpass().encode(&message).unwrap(),
    )
    .await
    .unwrap();
    let frame = net::read_frame(&mut reader, &framing)
        .await
        .unwrap()
        .expect("the bank answered on the quiet connection");
    let answer = profile::cloudpass().decode(&frame.message).unwrap();
    assert_eq!(answer.get_str(39), Some("00"));
    let _ = stop.send(true);
    let _ = server.await;
    assert_books_balance(&bank).await;
    let _ = std::fs::remove_dir_all(&bank.dir);
}

/// Writes `path` until its file system is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0_u8; 64 * 1024];
    let mut size = chunk.len();
    while size >= 512 {
        match file.write(&chunk[..size]) {
            Ok(0) | Err(_) => size /= 2,
            Ok(_) => {}
        }
    }
}

/// The bank's files on a small file system of their own that a ballast file fills (a tmpfs:
/// the test mounts it, so it runs as root, as CI does). While the disk is full the group
/// commits fail and are answered 96; once there is room again every approval is in the books
/// as any other reader sees them. A connection whose commit failed used to stay in a broken
/// transaction, and every "commit" after it was visible to that connection alone.
#[tokio::test]
async fn after_a_full_disk_every_approval_is_in_the_books() {
    let dir = fresh_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root");
    let bank = bank_in(dir.clone()).await;
    let mut stan = 0;
    let mut approved = Vec::new();
    let mut refused_while_full = 0;
    fill(&dir.join("ballast"));
    for full in [true, false] {
        if !full {
            std::fs::remove_file(dir.join("ballast")).unwrap();
        }
        for _ in 0..40 {
            stan += 1;
            let stan = format!("{stan:06}");
            match code(&bank, &purchase(DEBIT, 100, &stan)).await.as_str() {
                "00" => approved.push(stan),
                _ if full => refused_while_full += 1,
                other => panic!("declined {other} with room on the disk"),
            }
        }
    }
    assert!(refused_while_full > 0, "the disk never filled");
    let books: std::collections::BTreeSet<String> = {
        use sqlx::{ConnectOptions, Row};
        let mut reader = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("issuer.sqlite"))
            .read_only(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("SELECT stan FROM sim_transactions WHERE mti = '0200' AND response_code = '00'")
            .fetch_all(&mut reader)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("stan"))
            .collect()
    };
    let missing: Vec<&String> = approved
        .iter()
        .filter(|stan| !books.contains(*stan))
        .collect();
    assert!(
        missing.is_empty(),
        "approved but not in the books: {missing:?}"
    );
    assert_books_balance(&bank).await;
    drop(bank);
    // Lazily: the pool's connections close as the host is dropped.
    let _ = std::process::Command::new("umount")
        .arg("--lazy")
        .arg(&dir)
        .status();
    let _ = std::fs::remove_dir_all(&dir);
}
