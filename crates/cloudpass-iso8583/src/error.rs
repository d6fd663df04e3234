//! Codec errors. Every error names the part of the message (MTI, bitmap or field number and
//! name) and the byte offset where the problem starts, and never quotes a field's value:
//! a value may be a card number.

use std::fmt;

/// Which part of a message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Mti,
    Bitmap,
    Field {
        number: u8,
        name: &'static str,
    },
    /// The message as a whole (e.g. bytes left over after the last field).
    Message,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Mti => f.write_str("MTI"),
            Part::Bitmap => f.write_str("bitmap"),
            Part::Field { number, name: "" } => write!(f, "field {number}"),
            Part::Field { number, name } => write!(f, "field {number} ({name})"),
            Part::Message => f.write_str("message"),
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ends before the part does.
    Truncated { needed: usize, available: usize },
    /// A length prefix holds something other than decimal digits.
    BadLengthPrefix,
    /// A variable field is longer than its maximum.
    TooLong { length: usize, max: usize },
    /// A fixed field's value has the wrong length (encoding).
    WrongLength { length: usize, expected: usize },
    /// A character the field's content type does not allow; `position` counts from the
    /// start of the value.
    BadCharacter {
        position: usize,
        expected: &'static str,
    },
    /// A BCD nibble above 9 (or a wrong pad nibble).
    BadBcd { position: usize },
    /// The bitmap marks a field the profile does not define.
    UndefinedField,
    /// Bytes left after the last field the bitmap announces.
    TrailingBytes { count: usize },
    /// The MTI is not four digits.
    BadMti,
    /// A hex bitmap with a non-hex character.
    BadHex,
    /// A frame's length prefix or header is inconsistent.
    BadFrame(&'static str),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::Truncated { needed, available } => {
                write!(
                    f,
                    "message truncated: needs {needed} more bytes, {available} left"
                )
            }
            ErrorKind::BadLengthPrefix => f.write_str("length prefix is not a decimal number"),
            ErrorKind::TooLong { length, max } => {
                write!(f, "length {length} exceeds the maximum {max}")
            }
            ErrorKind::WrongLength { length, expected } => {
                write!(
                    f,
                    "value has length {length}; the field is fixed at {expected}"
                )
            }
            ErrorKind::BadCharacter { position, expected } => {
                write!(f, "character {position} of the value is not {expected}")
            }
            ErrorKind::BadBcd { position } => {
                write!(f, "BCD nibble {position} of the value is not a digit")
            }
            ErrorKind::UndefinedField => {
                f.write_str("present in the bitmap but not defined in the profile")
            }
            ErrorKind::TrailingBytes { count } => {
                write!(f, "{count} bytes left after the last field")
            }
            ErrorKind::BadMti => f.write_str("MTI must be four digits"),
            ErrorKind::BadHex => f.write_str("bitmap is not hexadecimal"),
            ErrorKind::BadFrame(problem) => f.write_str(problem),
        }
    }
}

/// An encoding or decoding error: where and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{part} at byte {offset}: {kind}")]
pub struct CodecError {
    pub part: Part,
    pub offset: usize,
    pub kind: ErrorKind,
}

impl CodecError {
    pub(crate) fn new(part: Part, offset: usize, kind: ErrorKind) -> Self {
        Self { part, offset, kind }
    }

    /// The field number the error is about, if it is about a field.
    pub fn field(&self) -> Option<u8> {
        match self.part {
            Part::Field { number, .. } => Some(number),
            _ => None,
        }
    }
}
