//! The `cloudpass` binary as a user runs it: stdin in, stdout and exit code out. Each test
//! spawns the real executable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use cloudpass_core::ResponseCode;
use cloudpass_iso8583::profile;

fn cloudpass(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudpass"))
        .args(args)
        .env_remove("CLOUDPASS_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn sample(name: &str) -> String {
    let output = cloudpass(&["iso8583", "sample", name], b"");
    assert!(output.status.success());
    stdout(&output)
}

/// A 0200 carrying fields 2 and 4, built by hand.
fn small(pan: &str, amount: &str, bitmap_first_byte: u8) -> String {
    let mut bytes = b"0200".to_vec();
    bytes.extend_from_slice(&[bitmap_first_byte, 0, 0, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(pan.as_bytes());
    bytes.extend_from_slice(amount.as_bytes());
    cloudpass_core::hex::encode(&bytes)
}

#[test]
fn decode_prints_fields_with_names_and_masks_the_card_number() {
    let hex = sample("contactless-purchase");
    let output = cloudpass(&["iso8583", "decode"], hex.as_bytes());
    assert!(output.status.success(), "{}", stderr(&output));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["mti"], "0200");
    let fields = document["fields"].as_array().unwrap();
    assert_eq!(fields[0]["field"], 2);
    assert_eq!(fields[0]["name"], "primary account number");
    assert_eq!(fields[0]["value"], "623118******0008");
    assert!(!stdout(&output).contains(cloudpass_iso8583::samples::SAMPLE_TOKEN));

    // Raw bytes work as well as hex.
    let raw = cloudpass_core::hex::decode(hex.trim()).unwrap();
    let output = cloudpass(&["iso8583", "decode", "--input", "raw"], &raw);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn revealed_decode_encodes_back_to_the_same_bytes() {
    for name in [
        "contactless-purchase",
        "contactless-purchase-response",
        "sign-on",
        "reversal",
    ] {
        let hex = sample(name);
        let decoded = cloudpass(&["iso8583", "decode", "--reveal"], hex.as_bytes());
        assert!(decoded.status.success());
        let encoded = cloudpass(&["iso8583", "encode"], &decoded.stdout);
        assert!(encoded.status.success(), "{name}: {}", stderr(&encoded));
        assert_eq!(stdout(&encoded), hex, "{name}");
    }
    // A masked capture is refused with the reason.
    let masked = cloudpass(
        &["iso8583", "decode"],
        sample("contactless-purchase").as_bytes(),
    );
    let encoded = cloudpass(&["iso8583", "encode"], &masked.stdout);
    assert!(!encoded.status.success());
    assert!(
        stderr(&encoded).contains("was masked when decoded; decode with --reveal"),
        "{}",
        stderr(&encoded)
    );
}

#[test]
fn framed_streams_round_trip() {
    let decoded = cloudpass(
        &["iso8583", "decode", "--reveal"],
        sample("sign-on").as_bytes(),
    );
    let two = format!("[{0},{0}]", stdout(&decoded));
    let framed = cloudpass(&["iso8583", "encode", "--framing", "cups"], two.as_bytes());
    assert!(framed.status.success(), "{}", stderr(&framed));
    let back = cloudpass(&["iso8583", "decode", "--framing", "cups"], &framed.stdout);
    assert!(back.status.success(), "{}", stderr(&back));
    let documents: serde_json::Value = serde_json::from_slice(&back.stdout).unwrap();
    assert_eq!(documents.as_array().unwrap().len(), 2);
    assert_eq!(documents[1]["cups_header"]["reject_code"], "00000");
}

#[test]
fn bad_input_gets_one_line_naming_field_and_offset() {
    let cases = [
        (
            small("166231180000000008", "0000000012", 0x50),
            "error: field 4 (amount, transaction) at byte 30: message truncated",
        ),
        (
            small("166231180000000008", "000000001250", 0x51),
            "error: field 8 at byte 42: present in the bitmap but not defined",
        ),
        (
            small("256231180000000008000000000", "000000001250", 0x50),
            "error: field 2 (primary account number) at byte 12: length 25 exceeds the maximum 19",
        ),
        (
            small("166231180000000008", "00000000125A", 0x50),
            "error: field 4 (amount, transaction) at byte 41: character 11 of the value is not a digit",
        ),
        ("3032".into(), "error: MTI at byte 0: message truncated"),
        ("".into(), "error: no input"),
    ];
    for (input, expected) in cases {
        let output = cloudpass(&["iso8583", "decode"], input.as_bytes());
        assert_eq!(output.status.code(), Some(1), "{input}");
        let message = stderr(&output);
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(stdout(&output).is_empty());
    }
}

#[test]
fn hsm_prints_only_the_check_value() {
    let dir = std::env::temp_dir().join(format!("cloudpass-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("master.key");
    let _ = std::fs::remove_file(&key_file);
    let generated = cloudpass(
        &[
            "hsm",
            "generate-master-key",
            "--out",
            key_file.to_str().unwrap(),
        ],
        b"",
    );
    assert!(generated.status.success(), "{}", stderr(&generated));
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.len(), 64);
    assert!(!stdout(&generated).contains(&key));
    // It refuses to overwrite.
    assert!(
        !cloudpass(
            &[
                "hsm",
                "generate-master-key",
                "--out",
                key_file.to_str().unwrap()
            ],
            b""
        )
        .status
        .success()
    );

    let output = cloudpass(
        &[
            "hsm",
            "check-value",
            "--master-key-file",
            key_file.to_str().unwrap(),
        ],
        b"",
    );
    assert!(output.status.success());
    let printed = stdout(&output);
    assert!(printed.starts_with("master key check value: "), "{printed}");
    assert!(!printed.contains(&key));
    assert!(
        stdout(&generated).contains(
            printed
                .trim()
                .trim_start_matches("master key check value: ")
        )
    );

    std::fs::write(&key_file, "not a key").unwrap();
    let output = cloudpass(
        &[
            "hsm",
            "check-value",
            "--master-key-file",
            key_file.to_str().unwrap(),
        ],
        b"",
    );
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output).trim(),
        "error: master key must be 64 hex digits (AES-256)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn readme_example_decodes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = std::fs::read(root.join("docs/examples/contactless-purchase.hex")).unwrap();
    let output = cloudpass(&["iso8583", "decode"], &example);
    assert!(output.status.success(), "{}", stderr(&output));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("docs/examples/contactless-purchase.hex"));
}

#[test]
fn the_profile_page_lists_every_field_and_response_code() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/iso8583-profile.md"),
    )
    .unwrap();
    for (number, spec) in profile::cloudpass().fields() {
        let row = format!("| {number} | {} | {} |", spec.notation(), spec.name);
        assert!(
            page.contains(&row),
            "docs/iso8583-profile.md lacks the row {row:?}"
        );
    }
    for code in ResponseCode::ALL {
        let row = format!("| {} | {} |", code.code(), code.meaning());
        assert!(
            page.contains(&row),
            "docs/iso8583-profile.md lacks the row {row:?}"
        );
    }
}

fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `CLOUDPASS_LOG_FORMAT=json`: `serve` writes each log line as one JSON object with its
/// time, level, target and message, for a log collector.
#[test]
fn serve_writes_json_log_lines_when_asked() {
    use std::io::BufRead;

    let dir = std::env::temp_dir().join(format!("cloudpass-jsonlog-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudpass"))
        .args(["serve", "--listen", &free_port()])
        .args(["--iso8583-listen", &free_port()])
        .args(["--issuer-iso8583-listen", &free_port()])
        .arg("--data-dir")
        .arg(&dir)
        .env("CLOUDPASS_LOG_FORMAT", "json")
        .env_remove("CLOUDPASS_MASTER_KEY")
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = received.recv_timeout(left) else {
            break false;
        };
        let event: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}"));
        assert!(
            event["timestamp"].is_string() && event["level"].is_string(),
            "{line}"
        );
        let restored = event["message"]
            .as_str()
            .is_some_and(|m| m.contains("working keys restored"));
        seen.push(line);
        if restored {
            break true;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(found, "no start-up line; saw:\n{}", seen.join("\n"));
}
