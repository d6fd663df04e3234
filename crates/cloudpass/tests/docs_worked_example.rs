//! docs/iso8583-profile.md's worked example is a contract: an outside terminal (and phone)
//! is built from it. This test reads the example's inputs from the page, computes every
//! output with the network's own code — the codec, the HSM's primitives, the phone's field
//! 55 — and checks each byte the page shows. When the page and the code disagree, the test
//! prints the block as the code computes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use cloudpass_core::hex;
use cloudpass_crypto::Pin;
use cloudpass_crypto::emv::{
    SessionKeyInput, application_cryptogram, arpc_method_1, derive_icc_master_key,
    derive_session_key,
};
use cloudpass_crypto::pin::format0_encode;
use cloudpass_crypto::primitives::{Padding, retail_mac, tdes_check_value, tdes_encrypt};
use cloudpass_iso8583::emv_data::{self, CardData, ChipRequest, TerminalData};
use cloudpass_iso8583::{Message, Mti, profile};

/// The `name = value` lines of the block that opens with `fence` on docs/`page`.
fn block(page: &str, fence: &str) -> BTreeMap<String, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let page = std::fs::read_to_string(root.join(page)).unwrap();
    let start = page
        .find(fence)
        .unwrap_or_else(|| panic!("{fence} is on the page"));
    let body = &page[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let body = &body[..body.find("```").unwrap()];
    body.lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

fn bytes(text: &str) -> Vec<u8> {
    hex::decode(&text.replace(' ', "")).unwrap()
}

fn key16(text: &str) -> [u8; 16] {
    bytes(text).try_into().unwrap()
}

fn spaced(data: &[u8]) -> String {
    hex::encode(data)
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_worked_example_is_what_the_code_computes() {
    let given = block("iso8583-profile.md", "```text worked-example");
    let input = |name: &str| {
        given
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("input {name}"))
    };

    // Sign-on: the working keys under the terminal master key, with their check values.
    let tmk = key16(input("terminal master key"));
    let pin_key = key16(input("PIN key"));
    let mac_key = key16(input("MAC key"));
    let mut field62 = Vec::new();
    for key in [pin_key, mac_key] {
        for half in key.chunks(8) {
            field62.extend_from_slice(&tdes_encrypt(&tmk, half.try_into().unwrap()));
        }
        field62.extend_from_slice(&tdes_check_value(&key));
        field62.push(0);
    }

    // The phone's cryptogram.
    let imk = key16(input("issuer master key (IMK-AC)"));
    let token = input("token");
    let psn: u8 = input("PAN sequence number").parse().unwrap();
    let atc = u16::from_str_radix(input("ATC (9F36)"), 16).unwrap();
    let terminal = TerminalData {
        amount: input("amount (9F02)").parse().unwrap(),
        other_amount: input("amount, other (9F03)").parse().unwrap(),
        country: input("terminal country (9F1A)").parse().unwrap(),
        currency: input("currency (5F2A)").parse().unwrap(),
        tvr: bytes(input("TVR (95)")).try_into().unwrap(),
        date: bytes(input("date (9A)")).try_into().unwrap(),
        transaction_type: bytes(input("transaction type (9C)"))[0],
        unpredictable_number: bytes(input("unpredictable number (9F37)"))
            .try_into()
            .unwrap(),
    };
    let card = CardData {
        aip: bytes(input("AIP (82)")).try_into().unwrap(),
        atc,
        cvr: bytes(input("CVR")).try_into().unwrap(),
    };
    let mk_ac = derive_icc_master_key(&imk, token, psn).unwrap();
    let session = derive_session_key(&mk_ac, SessionKeyInput::Atc { atc });
    let cdol1 = emv_data::cryptogram_input(&terminal, &card);
    let arqc = application_cryptogram(&session, &cdol1);
    let field55 = emv_data::request_field55(&terminal, &card, arqc);
    let parsed = ChipRequest::parse(&field55).expect("the switch reads the example's field 55");
    assert_eq!(parsed.cryptogram_input(), cdol1);
    let arpc = arpc_method_1(&mk_ac, &arqc, *b"00");
    let response55 = emv_data::response_field55(&arpc, "00");

    // The terminal's PIN block and MAC.
    let pin = Pin::parse(input("PIN")).unwrap();
    let clear_block = format0_encode(&pin, token).unwrap();
    let pin_block = tdes_encrypt(&pin_key, &clear_block);
    // A purchase with just the fields that show the MAC and the PIN (a real one carries
    // 14, 18, 22, 25, 35, 37, 43, 55 and 60 too): every field before 64, then 64.
    let mut purchase = Message::new(Mti::FINANCIAL_REQUEST);
    purchase
        .set_text(2, token)
        .set_text(3, "000000")
        .set_text(4, format!("{:012}", terminal.amount))
        .set_text(7, input("field 7"))
        .set_text(11, input("field 11"))
        .set_text(32, input("field 32"))
        .set_text(41, input("field 41"))
        .set_text(42, input("field 42"))
        .set_text(49, "156")
        .set(52, pin_block.to_vec())
        .set_text(53, "2600000000000000")
        .set(64, vec![0u8; 8]);
    let wire = profile::cloudpass().encode(&purchase).unwrap();
    let mac = retail_mac(&mac_key, &wire[..wire.len() - 8], Padding::Zeros);

    let computed: Vec<(&str, String)> = vec![
        ("PIN key check value", spaced(&tdes_check_value(&pin_key))),
        ("MAC key check value", spaced(&tdes_check_value(&mac_key))),
        ("field 62", spaced(&field62)),
        ("MK-AC", spaced(&mk_ac)),
        ("session key", spaced(&session)),
        (
            "issuer application data (9F10)",
            spaced(&card.issuer_application_data()),
        ),
        ("CDOL1 data", spaced(&cdol1)),
        ("ARQC (9F26)", spaced(&arqc)),
        ("field 55 (request)", spaced(&field55)),
        ("ARPC", spaced(&arpc)),
        ("field 55 (response)", spaced(&response55)),
        ("PIN block, clear (format 0)", spaced(&clear_block[..])),
        ("PIN block (field 52)", spaced(&pin_block)),
        (
            "MACed bytes (the 0200 up to field 64)",
            spaced(&wire[..wire.len() - 8]),
        ),
        ("MAC (field 64)", spaced(&mac)),
    ];
    let mismatches: Vec<String> = computed
        .iter()
        .filter(|(name, value)| {
            given.get(*name).map(|doc| doc.replace(' ', "")) != Some(value.replace(' ', ""))
        })
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "the worked example disagrees with the code; as computed:\n{}",
        mismatches.join("\n")
    );
}

/// A `Random` that hands out the bytes it was given, in order (the example's ephemeral
/// secret, then its nonce).
struct Scripted(std::sync::Mutex<Vec<u8>>);

impl cloudpass_core::Random for Scripted {
    fn fill(&self, buffer: &mut [u8]) {
        let mut bytes = self.0.lock().unwrap();
        let taken: Vec<u8> = bytes.drain(..buffer.len()).collect();
        buffer.copy_from_slice(&taken);
    }
}

fn check(given: &BTreeMap<String, String>, computed: &[(&str, String)]) {
    let mismatches: Vec<String> = computed
        .iter()
        .filter(|(name, value)| given.get(*name) != Some(value))
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "the page disagrees with the code; as computed:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn the_sealed_profile_example_opens_as_documented() {
    use cloudpass_crypto::DeviceKeyPair;
    use cloudpass_crypto::envelope::{DeviceEnvelope, seal};
    let given = block("tsp-api.md", "```text envelope-example");
    let device = DeviceKeyPair::from_secret(bytes(&given["device secret key"]).try_into().unwrap());
    let mut script = bytes(&given["ephemeral secret key"]);
    script.extend(bytes(&given["nonce"]));
    let aad = given["associated data (token ID)"].as_bytes();
    let plaintext = bytes(&given["plaintext"]);
    let sealed = seal(
        &device.public_key(),
        &plaintext,
        aad,
        &Scripted(std::sync::Mutex::new(script)),
    )
    .unwrap();
    assert_eq!(hex::encode(&sealed.nonce), given["nonce"]);
    check(
        &given,
        &[
            ("device public key", hex::encode(&device.public_key())),
            (
                "ephemeral public key",
                hex::encode(&sealed.ephemeral_public_key),
            ),
            ("ciphertext", hex::encode(&sealed.ciphertext)),
        ],
    );
    // And the device opens what the page shows.
    let shown = DeviceEnvelope {
        ephemeral_public_key: bytes(&given["ephemeral public key"]).try_into().unwrap(),
        nonce: bytes(&given["nonce"]).try_into().unwrap(),
        ciphertext: bytes(&given["ciphertext"]),
    };
    assert_eq!(&device.open(&shown, aad).unwrap()[..], &plaintext[..]);
}

#[test]
fn the_webhook_signature_example_is_what_the_code_signs() {
    let given = block("tsp-api.md", "```text signature-example");
    let timestamp: i64 = given["timestamp"].parse().unwrap();
    let signature = cloudpass_crypto::signature::sign(
        given["secret"].as_bytes(),
        timestamp,
        given["body"].as_bytes(),
    );
    check(&given, &[("signature", signature.clone())]);
    assert!(cloudpass_crypto::signature::verify(
        given["secret"].as_bytes(),
        timestamp,
        given["body"].as_bytes(),
        &signature.to_lowercase(),
        timestamp,
        300
    ));
}
