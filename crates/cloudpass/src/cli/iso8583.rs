//! `cloudpass iso8583 decode|encode|profile`: an operator's window on the wire format.

use std::io::{Read, Write};

use clap::{Subcommand, ValueEnum};
use cloudpass_core::hex;
use cloudpass_iso8583::framing::{CupsHeader, Framing};
use cloudpass_iso8583::{json, profile, samples};
use serde_json::{Value, json};

use super::CliResult;

/// The largest input read from stdin: a bound, captures beyond it are split first.
const MAX_INPUT: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, ValueEnum)]
pub enum InputFormat {
    /// Hex if the input is only hex digits and whitespace, raw bytes otherwise.
    Auto,
    Hex,
    Raw,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Hex,
    Raw,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FramingKind {
    /// A bare message.
    None,
    /// Each message after a 2-byte big-endian length.
    Length,
    /// Each message after a 2-byte length and a 46-byte CUPS header.
    Cups,
}

#[derive(Subcommand)]
pub enum Iso8583Command {
    /// Decode a message (hex or raw bytes on stdin) into JSON with field numbers, names and
    /// values. Card numbers, track data, PIN blocks and keys are masked unless --reveal.
    Decode {
        #[arg(long, value_enum, default_value = "auto")]
        input: InputFormat,
        #[arg(long, value_enum, default_value = "none")]
        framing: FramingKind,
        /// Show sensitive fields in clear (needed to re-encode the output).
        #[arg(long)]
        reveal: bool,
    },
    /// Encode a message from JSON on stdin (the form decode prints) to hex or raw bytes.
    Encode {
        #[arg(long, value_enum, default_value = "hex")]
        output: OutputFormat,
        #[arg(long, value_enum, default_value = "none")]
        framing: FramingKind,
    },
    /// Print the network profile: every field, its format and name.
    Profile,
    /// Print a typical message of the network as hex (a token, never a card number).
    Sample {
        #[arg(value_enum)]
        message: SampleMessage,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SampleMessage {
    /// 0200 contactless (qPBOC) purchase with field 55.
    ContactlessPurchase,
    /// 0210 approval of it, with the ARPC and token data.
    ContactlessPurchaseResponse,
    /// 0800 terminal sign-on.
    SignOn,
    /// 0400 reversal.
    Reversal,
}

pub fn run(command: Iso8583Command) -> CliResult {
    match command {
        Iso8583Command::Decode {
            input,
            framing,
            reveal,
        } => decode(input, framing, reveal),
        Iso8583Command::Encode { output, framing } => encode(output, framing),
        Iso8583Command::Profile => {
            let profile = profile::cloudpass();
            println!(
                "{}: MTI {:?}, bitmap {:?}",
                profile.name, profile.mti, profile.bitmap
            );
            for (number, spec) in profile.fields() {
                println!("{number:>4}  {:<18} {}", spec.notation(), spec.name);
            }
            Ok(())
        }
        Iso8583Command::Sample { message } => {
            let message = match message {
                SampleMessage::ContactlessPurchase => samples::contactless_purchase(),
                SampleMessage::ContactlessPurchaseResponse => {
                    samples::contactless_purchase_response()
                }
                SampleMessage::SignOn => samples::sign_on(),
                SampleMessage::Reversal => samples::reversal(),
            };
            let wire = profile::cloudpass()
                .encode(&message)
                .map_err(|error| error.to_string())?;
            println!("{}", hex::encode(&wire));
            Ok(())
        }
    }
}

fn read_stdin() -> Result<Vec<u8>, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|error| format!("cannot read stdin: {error}"))?;
    if input.len() > MAX_INPUT {
        return Err(format!("input is larger than {MAX_INPUT} bytes"));
    }
    Ok(input)
}

fn to_bytes(input: Vec<u8>, format: InputFormat) -> Result<Vec<u8>, String> {
    let compact: String = String::from_utf8_lossy(&input).split_whitespace().collect();
    if compact.is_empty() && !matches!(format, InputFormat::Raw) {
        return Err("no input: pipe a message as hex or raw bytes into stdin".into());
    }
    let looks_hex = !compact.is_empty() && compact.bytes().all(|b| b.is_ascii_hexdigit());
    match format {
        InputFormat::Raw => Ok(input),
        InputFormat::Hex => {
            hex::decode(&compact).map_err(|error| format!("input is not hex: {error}"))
        }
        InputFormat::Auto if looks_hex => {
            hex::decode(&compact).map_err(|error| format!("input is not hex: {error}"))
        }
        InputFormat::Auto => Ok(input),
    }
}

fn framing_of(kind: FramingKind) -> Option<Framing> {
    match kind {
        FramingKind::None => None,
        FramingKind::Length => Some(Framing::default()),
        FramingKind::Cups => Some(Framing {
            cups_header: true,
            ..Framing::default()
        }),
    }
}

fn header_json(header: &CupsHeader) -> Value {
    json!({
        "test": header.test,
        "source": String::from_utf8_lossy(&header.source).trim_end(),
        "destination": String::from_utf8_lossy(&header.destination).trim_end(),
        "reject_code": String::from_utf8_lossy(&header.reject_code),
    })
}

fn decode(input: InputFormat, framing: FramingKind, reveal: bool) -> CliResult {
    let bytes = to_bytes(read_stdin()?, input)?;
    if bytes.is_empty() {
        return Err("no input: pipe a message as hex or raw bytes into stdin".into());
    }
    let profile = profile::cloudpass();
    let documents = match framing_of(framing) {
        None => vec![json::to_json(
            profile,
            &profile.decode(&bytes).map_err(|e| e.to_string())?,
            reveal,
        )],
        Some(framing) => {
            let mut documents = Vec::new();
            let mut offset = 0;
            while offset < bytes.len() {
                let frame = framing
                    .read(&bytes[offset..])
                    .map_err(|error| format!("frame at byte {offset}: {error}"))?
                    .ok_or_else(|| format!("frame at byte {offset} is truncated"))?;
                let message = profile
                    .decode(frame.message)
                    .map_err(|error| format!("frame at byte {offset}: {error}"))?;
                let mut document = json::to_json(profile, &message, reveal);
                if let (Some(header), Value::Object(map)) = (frame.header.as_ref(), &mut document) {
                    map.insert("cups_header".into(), header_json(header));
                }
                documents.push(document);
                offset += frame.consumed;
            }
            documents
        }
    };
    let output = if documents.len() == 1 {
        documents.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(documents)
    };
    let text = serde_json::to_string_pretty(&output).map_err(|error| error.to_string())?;
    println!("{text}");
    Ok(())
}

fn encode(output: OutputFormat, framing: FramingKind) -> CliResult {
    let input = read_stdin()?;
    let document: Value =
        serde_json::from_slice(&input).map_err(|error| format!("input is not JSON: {error}"))?;
    let documents = match document {
        Value::Array(list) => list,
        single => vec![single],
    };
    let profile = profile::cloudpass();
    let mut out = Vec::new();
    for document in &documents {
        let message = json::from_json(profile, document).map_err(|error| error.to_string())?;
        let wire = profile
            .encode(&message)
            .map_err(|error| error.to_string())?;
        match framing_of(framing) {
            None => {
                if documents.len() > 1 {
                    return Err(
                        "several messages need --framing length or cups to be told apart".into(),
                    );
                }
                out.extend_from_slice(&wire);
            }
            Some(framing) => {
                let header = document.get("cups_header").map(|h| {
                    let text =
                        |key: &str| h.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
                    CupsHeader::new(
                        &text("source"),
                        &text("destination"),
                        h.get("test").and_then(Value::as_bool).unwrap_or(false),
                    )
                });
                framing
                    .write(header.as_ref(), &wire, &mut out)
                    .map_err(|error| error.to_string())?;
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    let written = match output {
        OutputFormat::Hex => writeln!(stdout, "{}", hex::encode(&out)),
        OutputFormat::Raw => stdout.write_all(&out),
    };
    written.map_err(|error| format!("cannot write stdout: {error}"))
}
