//! JSON request bodies parsed into typed requests.
//!
//! serde_json's own error messages quote the value they refuse (``invalid type: integer
//! `6200000000000000005`, expected a string``), and an error message is shown to the caller,
//! logged and stored with idempotency records. [`BodyError`] keeps only what is safe to show:
//! where the fault is, what shape was expected (our schema's words), and for a missing field
//! its name (also our schema's). It must never carry any part of the input.

use serde::de::DeserializeOwned;

/// Why a request body was refused. Its message never contains any part of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body: not valid JSON (line {line}, column {column})")]
    Syntax { line: usize, column: usize },
    #[error("request body: ends before the JSON value is complete")]
    Incomplete,
    #[error("request body: missing field `{field}`")]
    MissingField { field: String },
    #[error(
        "request body: a value has the wrong type or is not allowed (line {line}, column {column}){expected}"
    )]
    Data {
        line: usize,
        column: usize,
        /// `; expected …` in the schema's words, or empty.
        expected: String,
    },
}

/// Parses a JSON body; an empty body is an empty object.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|error| describe(&error))
}

/// The value-free description of a serde_json error.
pub fn describe(error: &serde_json::Error) -> BodyError {
    use serde_json::error::Category;
    let (line, column) = (error.line(), error.column());
    match error.classify() {
        Category::Eof => BodyError::Incomplete,
        Category::Syntax | Category::Io => BodyError::Syntax { line, column },
        Category::Data => {
            let text = error.to_string();
            if let Some(field) = missing_field(&text) {
                return BodyError::MissingField { field };
            }
            BodyError::Data {
                line,
                column,
                expected: expected(&text)
                    .map(|what| format!("; expected {what}"))
                    .unwrap_or_default(),
            }
        }
    }
}

/// A schema field name: what serde names in "missing field `x`", checked to be one.
fn schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn missing_field(text: &str) -> Option<String> {
    let rest = text.strip_prefix("missing field `")?;
    let name = &rest[..rest.find('`')?];
    schema_name(name).then(|| name.to_owned())
}

/// What serde says it expected: the text between ", expected " and " at line", which comes
/// from the target type's `expecting` (our schema), never from the input. Only plain words,
/// backquoted schema names and a few signs are let through.
fn expected(text: &str) -> Option<&str> {
    let start = text.find(", expected ")? + ", expected ".len();
    let rest = &text[start..];
    let what = &rest[..rest.rfind(" at line ").unwrap_or(rest.len())];
    let plain = what.len() <= 200
        && !what.bytes().any(|b| b.is_ascii_digit())
        && what
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b" `_,-".contains(&b));
    plain.then_some(what)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Card {
        number: String,
        cvn2: Option<String>,
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Debit,
    }

    fn error_text(body: &str) -> String {
        parse_json::<Card>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn errors_never_carry_the_value_they_refuse() {
        let secrets = ["6200000000000000005", "123", "4111111111111111", "evil"];
        let bodies = [
            r#"{"number": 6200000000000000005}"#,
            r#"{"number": "x", "cvn2": 123}"#,
            r#"{"number": ["4111111111111111"]}"#,
            r#"{"number": "x", "kind": "evil"}"#,
            r#"{"number": "x", "evil": 1}"#,
            r#"{"number": 4111111111111111.5}"#,
            r#"{"number": "6200000000000000005""#,
            r#"{"number": "6200000000000000005" evil}"#,
            r#"6200000000000000005"#,
            r#""6200000000000000005""#,
        ];
        for body in bodies {
            let text = error_text(body);
            for secret in secrets {
                assert!(!text.contains(secret), "{body} gave {text}");
            }
        }
    }

    #[test]
    fn errors_still_say_what_is_wrong() {
        assert_eq!(
            error_text(r#"{"number": 6200000000000000005}"#),
            "request body: a value has the wrong type or is not allowed (line 1, column 30); expected a string"
        );
        assert_eq!(
            error_text(r#"{"cvn2": "123"}"#),
            "request body: missing field `number`"
        );
        assert_eq!(
            error_text("{\"number\": "),
            "request body: ends before the JSON value is complete"
        );
        assert!(error_text("{nope}").starts_with("request body: not valid JSON (line 1"));
        assert!(
            error_text(r#"{"number": "x", "kind": "evil"}"#).ends_with("expected `debit`"),
            "{}",
            error_text(r#"{"number": "x", "kind": "evil"}"#)
        );
        assert_eq!(
            parse_json::<serde_json::Value>(b"").unwrap(),
            serde_json::json!({})
        );
    }
}
