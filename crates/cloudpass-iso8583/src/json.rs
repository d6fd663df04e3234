//! A message as JSON, for people and for tools: `cloudpass iso8583 decode` prints it and
//! `cloudpass iso8583 encode` reads it back.
//!
//! ```json
//! {"mti": "0200", "fields": [{"field": 2, "name": "primary account number",
//!   "format": "n..19 LLVAR", "value": "623118******0008"}, …], "masked": [2]}
//! ```
//!
//! Binary values are upper-case hex. Unless revealed, sensitive values are masked following
//! the profile's [`Sensitivity`] column, and the masked field numbers are listed so that
//! encoding a masked capture fails with a clear message instead of a confusing one.
//! Decoded views add the inner structure of fields 55 (`tlv`), 60/61 (`subfields`), 56/63
//! (`usages`) and 90 (`original`); encoding ignores those and reads `value` only.

use serde_json::{Map, Value, json};

use crate::message::{Message, Mti};
use crate::private::{
    FIELD_60, FIELD_61, OriginalData, Positional, TaggedData, Usages, token_tags,
};
use crate::spec::{Content, Profile, Sensitivity};
use crate::tlv;
use cloudpass_core::card_number::mask_digits;
use cloudpass_core::hex;

/// A JSON document that is not a message of the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

fn fail<T>(message: impl Into<String>) -> Result<T, JsonError> {
    Err(JsonError(message.into()))
}

/// Tags of field 55 that can hold a card number, track data or a name.
const SENSITIVE_ICC_TAGS: &[&str] = &["5A", "57", "9F6B", "5F20"];

/// `message` as JSON. Sensitive values are masked unless `reveal`.
pub fn to_json(profile: &Profile, message: &Message<'_>, reveal: bool) -> Value {
    let mut fields = Vec::with_capacity(message.len());
    let mut masked = Vec::new();
    for (number, raw) in message.fields() {
        let Some(spec) = profile.field(number) else {
            continue;
        };
        let mut entry = Map::new();
        entry.insert("field".into(), json!(number));
        entry.insert("name".into(), json!(spec.name));
        entry.insert("format".into(), json!(spec.notation()));
        let text = if spec.content == Content::Binary {
            hex::encode(raw)
        } else {
            String::from_utf8_lossy(raw).into_owned()
        };
        let hide = !reveal && spec.sensitivity != Sensitivity::Public;
        let (value, was_masked) = if hide {
            mask(spec.sensitivity, &text, raw)
        } else {
            (text, false)
        };
        if was_masked {
            masked.push(number);
        }
        entry.insert("value".into(), json!(value));
        if let Some(detail) = structure(
            number,
            raw,
            if hide { Some(spec.sensitivity) } else { None },
        ) {
            let (key, detail) = detail;
            entry.insert(key.into(), detail);
        }
        fields.push(Value::Object(entry));
    }
    let mut document = Map::new();
    document.insert("mti".into(), json!(message.mti().as_str()));
    document.insert("fields".into(), Value::Array(fields));
    if !masked.is_empty() {
        document.insert("masked".into(), json!(masked));
    }
    Value::Object(document)
}

/// The masked form of a value and whether anything was hidden.
fn mask(sensitivity: Sensitivity, text: &str, raw: &[u8]) -> (String, bool) {
    match sensitivity {
        Sensitivity::Public => (text.to_owned(), false),
        Sensitivity::CardNumber => (mask_digits(text), true),
        Sensitivity::Track => {
            let (account, rest) = text.split_once(['=', 'D', '^']).unwrap_or((text, ""));
            let hidden_rest = "*".repeat(rest.len());
            let separator = if text.len() > account.len() {
                &text[account.len()..account.len() + 1]
            } else {
                ""
            };
            (
                format!("{}{separator}{hidden_rest}", mask_digits(account)),
                true,
            )
        }
        Sensitivity::Secret => ("*".repeat(text.len()), true),
        Sensitivity::TokenData => match Usages::parse(63, text) {
            Ok(usages) => {
                let masked = mask_usages(&usages);
                let changed = masked != text;
                (masked, changed)
            }
            Err(_) => ("*".repeat(text.len()), true),
        },
        Sensitivity::IccData => match tlv::parse(raw) {
            Ok(objects) => {
                let mut out = String::with_capacity(text.len());
                let mut changed = false;
                let mut position = 0;
                for object in objects {
                    let value_start = object.value_offset;
                    let value_end = value_start + object.value.len();
                    out.push_str(&hex::encode(&raw[position..value_start]));
                    let value_hex = hex::encode(object.value);
                    if SENSITIVE_ICC_TAGS.contains(&object.tag.to_string().as_str()) {
                        out.push_str(&mask_digits(&value_hex));
                        changed = true;
                    } else {
                        out.push_str(&value_hex);
                    }
                    position = value_end;
                }
                (out, changed)
            }
            Err(_) => ("*".repeat(text.len()), true),
        },
    }
}

fn mask_usages(usages: &Usages) -> String {
    let mut out = Usages::default();
    for (usage, data) in usages.blocks() {
        let data = match (usage, TaggedData::parse(63, data)) {
            ("TK", Ok(mut tags)) => {
                if let Some(token) = tags.get(token_tags::TOKEN).map(mask_digits) {
                    let _ = tags.set(token_tags::TOKEN, &token);
                }
                tags.to_string()
            }
            ("TK", Err(_)) => "*".repeat(data.len()),
            _ => data.to_owned(),
        };
        let _ = out.set(usage, &data);
    }
    out.to_string()
}

/// The inner structure of private and chip fields, when it parses.
fn structure(
    number: u8,
    raw: &[u8],
    masking: Option<Sensitivity>,
) -> Option<(&'static str, Value)> {
    let text = std::str::from_utf8(raw).ok();
    match number {
        55 => {
            let objects = tlv::parse(raw).ok()?;
            let list = objects
                .iter()
                .map(|object| {
                    let tag = object.tag.to_string();
                    let mut value = hex::encode(object.value);
                    if masking.is_some() && SENSITIVE_ICC_TAGS.contains(&tag.as_str()) {
                        value = mask_digits(&value);
                    }
                    json!({"tag": tag, "value": value})
                })
                .collect();
            Some(("tlv", Value::Array(list)))
        }
        60 | 61 => {
            let layout = if number == 60 { FIELD_60 } else { FIELD_61 };
            let positional = Positional::parse(number, layout, text?).ok()?;
            let list = positional
                .present()
                .map(|(sub, value)| json!({"id": sub.id, "name": sub.name, "value": value}))
                .collect();
            Some(("subfields", Value::Array(list)))
        }
        56 | 63 => {
            let usages = Usages::parse(number, text?).ok()?;
            let list = usages
                .blocks()
                .map(|(usage, data)| match TaggedData::parse(number, data) {
                    Ok(tags) => {
                        let tags: Vec<Value> = tags
                            .entries()
                            .map(|(tag, value)| {
                                let shown = if masking.is_some()
                                    && usage == "TK"
                                    && tag == token_tags::TOKEN
                                {
                                    mask_digits(value)
                                } else {
                                    value.to_owned()
                                };
                                json!({"tag": tag, "value": shown})
                            })
                            .collect();
                        json!({"usage": usage, "tags": tags})
                    }
                    Err(_) => json!({"usage": usage, "data": data}),
                })
                .collect();
            Some(("usages", Value::Array(list)))
        }
        90 => {
            let original = OriginalData::parse(text?).ok()?;
            Some((
                "original",
                json!({
                    "mti": original.mti, "stan": original.stan, "transmission_time": original.transmission_time,
                    "acquirer": original.acquirer, "forwarder": original.forwarder,
                }),
            ))
        }
        _ => None,
    }
}

/// Reads a message from its JSON form (as [`to_json`] writes it). `fields` may be the
/// array form or an object keyed by field number; a field may be an object with `value`
/// or the value itself.
pub fn from_json(profile: &Profile, document: &Value) -> Result<Message<'static>, JsonError> {
    let Some(object) = document.as_object() else {
        return fail("the message must be a JSON object");
    };
    let Some(mti) = object.get("mti").and_then(Value::as_str) else {
        return fail("\"mti\" is missing or not a string");
    };
    let mti = Mti::parse(mti).or_else(|_| fail(format!("MTI {mti:?} is not four digits")))?;
    let masked: Vec<u64> = object
        .get("masked")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();

    let entries: Vec<(u64, &Value)> = match object.get("fields") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|entry| match entry.get("field").and_then(Value::as_u64) {
                Some(number) => Ok((number, entry)),
                None => fail("each entry of \"fields\" needs a numeric \"field\""),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match key.parse::<u64>() {
                Ok(number) => Ok((number, value)),
                Err(_) => fail(format!("field key {key:?} is not a number")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return fail("\"fields\" must be an array or an object"),
        None => return fail("\"fields\" is missing"),
    };

    let mut message = Message::new(mti);
    for (number, entry) in entries {
        let Some(field) = u8::try_from(number).ok().filter(|n| (2..=128).contains(n)) else {
            return fail(format!("field number {number} is not between 2 and 128"));
        };
        let Some(spec) = profile.field(field) else {
            return fail(format!(
                "field {field} is not defined in the {} profile",
                profile.name
            ));
        };
        if masked.contains(&number) {
            return fail(format!(
                "field {field} ({}) was masked when decoded; decode with --reveal to re-encode",
                spec.name
            ));
        }
        let value = match entry {
            Value::Object(map) => map.get("value"),
            other => Some(other),
        };
        let Some(Value::String(value)) = value else {
            return fail(format!(
                "field {field} ({}): value must be a string",
                spec.name
            ));
        };
        if message.contains(field) {
            return fail(format!("field {field} appears twice"));
        }
        if spec.content == Content::Binary {
            let bytes = hex::decode(value)
                .or_else(|error| fail(format!("field {field} ({}): {error}", spec.name)))?;
            message.set(field, bytes);
        } else {
            message.set_text(field, value.clone());
        }
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlv::Tag;
    use crate::{profile::cloudpass, samples};

    #[test]
    fn revealed_json_round_trips() {
        for message in [
            samples::contactless_purchase(),
            samples::contactless_purchase_response(),
            samples::sign_on(),
            samples::reversal(),
        ] {
            let document = to_json(cloudpass(), &message, true);
            assert!(document.get("masked").is_none());
            assert_eq!(from_json(cloudpass(), &document).unwrap(), message);
            let text = serde_json::to_string(&document).unwrap();
            assert_eq!(
                from_json(cloudpass(), &serde_json::from_str(&text).unwrap()).unwrap(),
                message
            );
        }
    }

    #[test]
    fn masked_json_hides_every_card_number_and_refuses_to_encode() {
        let mut message = samples::contactless_purchase_response();
        message.set(52, vec![0x12; 8]);
        message.set_text(63, token_usage());
        let mut icc = message.get(55).unwrap().to_vec();
        tlv::write(
            Tag::from_hex("5A").unwrap(),
            &[0x62, 0x31, 0x18, 0x00, 0x00, 0x00, 0x00, 0x08],
            &mut icc,
        )
        .unwrap();
        message.set(55, icc);
        message.set_text(35, format!("{}=29112010000000000", samples::SAMPLE_TOKEN));
        let document = to_json(cloudpass(), &message, false);
        let text = serde_json::to_string(&document).unwrap();
        assert!(!text.contains(samples::SAMPLE_TOKEN), "{text}");
        assert!(!text.contains("12121212"), "{text}");
        assert!(text.contains("623118******0008"));
        assert_eq!(document["masked"], json!([2, 35, 52, 55, 63]));
        let error = from_json(cloudpass(), &document).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("field 2 (primary account number) was masked"),
            "{error}"
        );
    }

    #[test]
    fn structure_of_private_fields_is_shown() {
        // The switch's message to the issuer: the acquirer's fields with 63 TK added.
        let mut message = samples::contactless_purchase();
        message.remove(55);
        message.set(55, crate::emv_data::response_field55(&[0x99; 8], "00"));
        message.set_text(63, token_usage());
        let document = to_json(cloudpass(), &message, false);
        let fields = document["fields"].as_array().unwrap();
        let field = |n: u64| fields.iter().find(|f| f["field"] == json!(n)).unwrap();
        assert_eq!(field(55)["tlv"][0]["tag"], "91");
        assert_eq!(field(60)["subfields"][5]["id"], "60.2.5");
        assert_eq!(field(63)["usages"][0]["usage"], "TK");
        assert_eq!(
            field(63)["usages"][0]["tags"][1]["value"],
            "623118******0008"
        );
    }

    /// Field 63 usage TK as the switch writes it for the issuer.
    fn token_usage() -> String {
        use crate::private::{TaggedData, Usages, token_tags};
        let mut token = TaggedData::default();
        token
            .set(token_tags::VERIFIED, "1")
            .and_then(|t| t.set(token_tags::TOKEN, samples::SAMPLE_TOKEN))
            .and_then(|t| t.set(token_tags::REQUESTOR_ID, "40010030273"))
            .unwrap();
        let mut usages = Usages::default();
        usages.set("TK", &token.to_string()).unwrap();
        usages.to_string()
    }

    #[test]
    fn bad_documents_say_what_is_wrong() {
        let check = |text: &str, expected: &str| {
            let error = from_json(cloudpass(), &serde_json::from_str(text).unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        };
        check("[]", "JSON object");
        check(r#"{"fields": []}"#, "\"mti\"");
        check(r#"{"mti": "02", "fields": []}"#, "four digits");
        check(r#"{"mti": "0200"}"#, "\"fields\" is missing");
        check(r#"{"mti": "0200", "fields": {"x": "1"}}"#, "not a number");
        check(
            r#"{"mti": "0200", "fields": {"1": "1"}}"#,
            "between 2 and 128",
        );
        check(r#"{"mti": "0200", "fields": {"8": "1"}}"#, "not defined");
        check(r#"{"mti": "0200", "fields": {"55": "9F2"}}"#, "field 55");
        check(
            r#"{"mti": "0200", "fields": {"4": 1250}}"#,
            "must be a string",
        );
        check(
            r#"{"mti": "0200", "fields": [{"field": 4, "value": "1"}, {"field": 4, "value": "2"}]}"#,
            "twice",
        );
    }
}
