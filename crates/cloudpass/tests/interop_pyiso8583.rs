//! Interoperability with an independent ISO 8583 implementation, PyPI `pyiso8583` 4.0.1,
//! using a spec written by hand from docs/iso8583-profile.md: messages it encodes must decode
//! with our codec to the values it was given, and messages we encode must decode with it to
//! our values. Four messages each way: a 0200 contactless purchase with field 55, a 0210, an
//! 0800 sign-on and a 0400 reversal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use cloudpass_core::hex;
use cloudpass_iso8583::{Content, Message, profile, samples};
use serde_json::{Map, Value};

fn run_script(mode: &str, input: &str) -> Value {
    let mut child = Command::new(support::interop_python())
        .arg(support::interop_dir().join("pyiso8583_interop.py"))
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the interop script");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "pyiso8583 {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Our message's field values in pyiso8583's terms: text as is, binary as upper-case hex.
fn as_doc(message: &Message<'_>) -> Map<String, Value> {
    let profile = profile::cloudpass();
    let mut doc = Map::new();
    doc.insert("t".into(), Value::String(message.mti().as_str().into()));
    for (number, value) in message.fields() {
        let spec = profile.field(number).unwrap();
        let text = if spec.content == Content::Binary {
            hex::encode(value)
        } else {
            String::from_utf8(value.to_vec()).unwrap()
        };
        doc.insert(number.to_string(), Value::String(text));
    }
    doc
}

fn normalized(doc: &Map<String, Value>) -> Map<String, Value> {
    let profile = profile::cloudpass();
    doc.iter()
        .map(|(key, value)| {
            let binary = key
                .parse::<u8>()
                .ok()
                .and_then(|n| profile.field(n))
                .is_some_and(|spec| spec.content == Content::Binary);
            let text = value.as_str().unwrap();
            (
                key.clone(),
                Value::String(if binary {
                    text.to_uppercase()
                } else {
                    text.to_owned()
                }),
            )
        })
        .collect()
}

#[test]
fn pyiso8583_and_cloudpass_read_each_others_messages() {
    // They encode, we decode.
    let encoded = run_script("encode", "");
    let cases = encoded.as_object().unwrap();
    assert_eq!(cases.len(), 4);
    for (name, case) in cases {
        let wire = hex::decode(case["hex"].as_str().unwrap()).unwrap();
        let message = profile::cloudpass()
            .decode(&wire)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(
            as_doc(&message),
            normalized(case["doc"].as_object().unwrap()),
            "{name}"
        );
        // And our encoding of what we decoded is byte for byte theirs.
        assert_eq!(
            profile::cloudpass().encode(&message).unwrap(),
            wire,
            "{name}"
        );
    }

    // We encode, they decode.
    let ours = [
        ("0200 contactless purchase", samples::contactless_purchase()),
        ("0210 response", samples::contactless_purchase_response()),
        ("0800 sign-on", samples::sign_on()),
        ("0400 reversal", samples::reversal()),
    ];
    let request: Map<String, Value> = ours
        .iter()
        .map(|(name, message)| {
            (
                (*name).to_owned(),
                Value::String(hex::encode(&profile::cloudpass().encode(message).unwrap())),
            )
        })
        .collect();
    let decoded = run_script("decode", &Value::Object(request).to_string());
    for (name, message) in &ours {
        let theirs = decoded[*name].as_object().unwrap();
        assert_eq!(normalized(theirs), as_doc(message), "{name}");
    }
}

/// pyiso8583 as a terminal over plain TCP: it signs on to the running switch and sends a
/// contactless purchase carrying a real phone's chip data; the token pays, the issuer's
/// ledger moves, and the answer carries the token (never the card) and the ARPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pyiso8583_terminal_pays_by_tap_over_tcp() {
    use cloudpass_iso8583::emv_data::TerminalData;
    use support::app::{APPLE, Backend, CMB_DEBIT, TestApp};
    use support::network::{balance, phone};

    let app = TestApp::start(Backend::Sqlite).await;
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    let tap = phone
        .tap(
            &TerminalData {
                amount: 8800,
                other_amount: 0,
                country: 156,
                currency: 156,
                tvr: [0; 5],
                date: [0x26, 0x11, 0x25],
                transaction_type: 0,
                unpredictable_number: [0x0A, 0x0B, 0x0C, 0x0D],
            },
            false,
        )
        .unwrap();
    let order = serde_json::json!({
        "address": app.running.switch_addr.to_string(),
        // The sandbox's plain acquirer: pyiso8583 cannot compute a MAC.
        "acquirer": cloudpass::sandbox::PLAIN_ACQUIRER_ID,
        "merchant": cloudpass::sandbox::PLAIN_MERCHANT_ID,
        "terminal": cloudpass::sandbox::PLAIN_TERMINALS[0],
        "token": cloudpass_core::AccountNumber::expose(phone.token()),
        "expiry": phone.expiry().to_wire(),
        "track2": tap.track2,
        "icc": hex::encode(&tap.field55),
        "amount": 8800,
        "stan": "004711",
        "time": "1125120501",
    })
    .to_string();
    let answers = tokio::task::spawn_blocking(move || run_script("purchase", &order))
        .await
        .unwrap();
    let sign_on = &answers["sign_on"];
    assert_eq!(sign_on["t"], "0810");
    assert_eq!(sign_on["39"], "00");
    assert_eq!(
        sign_on["62"].as_str().unwrap().len(),
        80,
        "PIN and MAC keys with check values, 40 bytes"
    );
    let purchase = &answers["purchase"];
    assert_eq!(purchase["t"], "0210");
    assert_eq!(purchase["39"], "00", "{purchase}");
    assert_eq!(
        purchase["2"].as_str().unwrap(),
        cloudpass_core::AccountNumber::expose(phone.token()),
        "the acquirer sees the token, never the card"
    );
    assert!(
        purchase["55"].as_str().unwrap().starts_with("910A"),
        "the ARPC comes back: {purchase}"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 8800);
    app.stop().await;
}
