//! The UPACP message: `key=value` pairs joined by `&`, UTF-8.
//!
//! Two encodings reach us. Requests and notifications travel as HTML form posts
//! (`application/x-www-form-urlencoded`, values percent-encoded). Synchronous responses are
//! "raw": values as they are, where a value may itself hold `{…}` or `[…]` with `&` and `=`
//! inside, so pairs are split only at the top nesting level and a pair at its first `=`
//! (reference/upacp.md §3, "Response parsing"). Both parse into the same [`Form`].
//!
//! A form never holds a key twice, and parsing is bounded ([`MAX_FIELDS`]). Errors name the
//! problem and the key, never a value: values may be card numbers.

use std::collections::BTreeMap;

/// The most fields a form may carry; UPACP messages have about 40.
pub const MAX_FIELDS: usize = 200;
/// The longest key: UPACP keys are short camelCase names.
pub const MAX_KEY_LEN: usize = 64;

/// Why a body is not a UPACP form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("a pair has no '=' (after field {after})")]
    MissingEquals { after: String },
    #[error("a pair has an empty key")]
    EmptyKey,
    #[error(
        "a key is longer than {MAX_KEY_LEN} characters or holds characters other than letters and digits"
    )]
    BadKey,
    #[error("field {0} appears twice")]
    Duplicate(String),
    #[error("field {0} has unbalanced braces or brackets")]
    Unbalanced(String),
    #[error("the form has more than {MAX_FIELDS} fields")]
    TooManyFields,
}

/// A UPACP message, its fields sorted by key (the order the string to sign needs).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Form {
    fields: BTreeMap<String, String>,
}

impl std::fmt::Debug for Form {
    // Keys only: values may be card numbers, names or signatures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.fields.keys()).finish()
    }
}

fn check_key(key: &str) -> Result<(), FormError> {
    if key.is_empty() {
        return Err(FormError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(FormError::BadKey);
    }
    Ok(())
}

impl Form {
    pub fn new() -> Form {
        Form::default()
    }

    /// Parses a raw (not URL-encoded) form, as UPACP synchronous responses are written.
    pub fn parse_raw(body: &str) -> Result<Form, FormError> {
        let mut form = Form::new();
        for pair in split_top_level(body)? {
            if pair.is_empty() {
                continue;
            }
            let Some((key, value)) = pair.split_once('=') else {
                return Err(FormError::MissingEquals {
                    after: form.last_key(),
                });
            };
            form.insert_new(key, value)?;
        }
        Ok(form)
    }

    /// Parses an `application/x-www-form-urlencoded` body, as browsers and UPACP clients
    /// post requests and notifications.
    pub fn parse_urlencoded(body: &[u8]) -> Result<Form, FormError> {
        let mut form = Form::new();
        for pair in body.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let Some(equals) = pair.iter().position(|b| *b == b'=') else {
                return Err(FormError::MissingEquals {
                    after: form.last_key(),
                });
            };
            let key = decode_component(&pair[..equals])?;
            let value = decode_component(&pair[equals + 1..])?;
            form.insert_new(&key, &value)?;
        }
        Ok(form)
    }

    /// Parses a received message whose encoding is not known: URL-encoded when it carries
    /// percent escapes and no raw line break or space (a raw `signPubKeyCert` always holds
    /// CRLF), raw otherwise.
    pub fn parse_either(body: &[u8]) -> Result<Form, FormError> {
        let text = std::str::from_utf8(body).map_err(|_| FormError::NotUtf8)?;
        if looks_urlencoded(text) {
            Form::parse_urlencoded(text.as_bytes())
        } else {
            Form::parse_raw(text)
        }
    }

    fn last_key(&self) -> String {
        self.fields
            .keys()
            .last()
            .cloned()
            .unwrap_or_else(|| "none".into())
    }

    fn insert_new(&mut self, key: &str, value: &str) -> Result<(), FormError> {
        check_key(key)?;
        if self.fields.contains_key(key) {
            return Err(FormError::Duplicate(key.into()));
        }
        if self.fields.len() >= MAX_FIELDS {
            return Err(FormError::TooManyFields);
        }
        self.fields.insert(key.into(), value.into());
        Ok(())
    }

    /// Sets a field (replacing any earlier value). Keys are ours, so they are trusted.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.fields.remove(key)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The field's value when present and not blank.
    pub fn non_blank(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.trim().is_empty())
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Drops fields with blank values: UnionPay's SDKs neither sign nor send them.
    pub fn drop_blank(&mut self) {
        self.fields.retain(|_, v| !v.trim().is_empty());
    }

    /// The string a signature covers: every field except `signature`, sorted by key, `k=v`
    /// joined by `&`, values exactly as they are.
    pub fn string_to_sign(&self) -> String {
        self.join(|key| key != "signature")
    }

    /// The raw encoding of UPACP synchronous responses.
    pub fn to_raw(&self) -> String {
        self.join(|_| true)
    }

    fn join(&self, keep: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        for (key, value) in self.fields.iter().filter(|(k, _)| keep(k)) {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        out
    }

    /// The `application/x-www-form-urlencoded` encoding (notifications, front forms).
    pub fn to_urlencoded(&self) -> String {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.fields {
            serializer.append_pair(key, value);
        }
        serializer.finish()
    }
}

/// One URL-encoded key or value: `+` is a space, `%XX` a byte, and the bytes must be UTF-8
/// (strictly: a lossy decoding would sign something other than what was sent).
fn decode_component(bytes: &[u8]) -> Result<String, FormError> {
    let plus_as_space: Vec<u8> = bytes
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| FormError::NotUtf8)
}

fn looks_urlencoded(text: &str) -> bool {
    let bytes = text.as_bytes();
    let has_escape = bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    has_escape && !text.contains(['\r', '\n', ' '])
}

/// Splits at `&` outside `{…}` and `[…]`.
fn split_top_level(body: &str) -> Result<Vec<&str>, FormError> {
    let mut pairs = Vec::new();
    let mut depth: Vec<char> = Vec::new();
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match c {
            '{' | '[' => depth.push(c),
            '}' | ']' => {
                let opener = if c == '}' { '{' } else { '[' };
                if depth.pop() != Some(opener) {
                    return Err(FormError::Unbalanced(key_of(&body[start..i])));
                }
            }
            '&' if depth.is_empty() => {
                pairs.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if pairs.len() > MAX_FIELDS {
            return Err(FormError::TooManyFields);
        }
    }
    if !depth.is_empty() {
        return Err(FormError::Unbalanced(key_of(&body[start..])));
    }
    pairs.push(&body[start..]);
    Ok(pairs)
}

/// The key of a pair for an error message, or a placeholder when it is not a plain key.
fn key_of(pair: &str) -> String {
    let key = pair.split_once('=').map_or(pair, |(k, _)| k);
    if check_key(key).is_ok() {
        key.into()
    } else {
        "?".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_forms_keep_nested_values_whole() {
        let form = Form::parse_raw(
            "respCode=00&reserved={cardNumberLock=1&x=[a&b]}&riskRateInfo={commodityName=书}&signature=ab==",
        )
        .unwrap();
        assert_eq!(form.get("reserved"), Some("{cardNumberLock=1&x=[a&b]}"));
        assert_eq!(form.get("riskRateInfo"), Some("{commodityName=书}"));
        assert_eq!(
            form.get("signature"),
            Some("ab=="),
            "split at the first '=' only"
        );
        assert_eq!(
            form.string_to_sign(),
            "reserved={cardNumberLock=1&x=[a&b]}&respCode=00&riskRateInfo={commodityName=书}"
        );
    }

    #[test]
    fn malformed_raw_forms_say_what_is_wrong_without_values() {
        assert_eq!(
            Form::parse_raw("a=1&b"),
            Err(FormError::MissingEquals { after: "a".into() })
        );
        assert_eq!(
            Form::parse_raw("a=1&a=2"),
            Err(FormError::Duplicate("a".into()))
        );
        assert_eq!(Form::parse_raw("=1"), Err(FormError::EmptyKey));
        assert_eq!(
            Form::parse_raw("a=1&reserved={x=6212345678901232"),
            Err(FormError::Unbalanced("reserved".into()))
        );
        assert_eq!(
            Form::parse_raw("a={]"),
            Err(FormError::Unbalanced("a".into()))
        );
        let message = Form::parse_raw("accNo=6212345678901232&x")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("6212345678901232"));
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            Form::parse_raw(&many.join("&")),
            Err(FormError::TooManyFields)
        );
    }

    #[test]
    fn urlencoded_forms_decode_and_round_trip() {
        let mut form = Form::new();
        form.set(
            "signPubKeyCert",
            "-----BEGIN CERTIFICATE-----\r\nMII+/=\r\n-----END CERTIFICATE-----",
        )
        .set("reqReserved", "a&b=c {x}")
        .set("orderDesc", "书 book");
        let encoded = form.to_urlencoded();
        assert!(!encoded.contains(' ') && !encoded.contains('\n'));
        assert_eq!(Form::parse_urlencoded(encoded.as_bytes()).unwrap(), form);
        assert_eq!(Form::parse_either(encoded.as_bytes()).unwrap(), form);
        // The raw encoding cannot carry a top-level '&' in a value (UnionPay asks merchants
        // to avoid them); nested in braces it can.
        form.set("reqReserved", "{a&b=c}");
        assert_eq!(Form::parse_either(form.to_raw().as_bytes()).unwrap(), form);
        assert_eq!(Form::parse_urlencoded(b"a=%FF"), Err(FormError::NotUtf8));
        // A replacement character sent on purpose is text like any other.
        let odd = Form::new().with("a", "\u{FFFD}+ %");
        assert_eq!(
            Form::parse_urlencoded(odd.to_urlencoded().as_bytes()).unwrap(),
            odd
        );
        assert_eq!(
            Form::parse_urlencoded(b"a=1&a=2"),
            Err(FormError::Duplicate("a".into()))
        );
    }

    #[test]
    fn blank_values_are_dropped_before_signing() {
        let mut form = Form::parse_raw("a=1&b=&c= &signature=x").unwrap();
        form.drop_blank();
        assert_eq!(form.string_to_sign(), "a=1");
        assert_eq!(format!("{form:?}"), r#"{"a", "signature"}"#);
    }
}
