//! What a field looks like on the wire, as data. A [`Profile`] is a table of
//! [`FieldSpec`]s; the codec reads the table and has no field-specific code.

/// The characters a field may hold (its logical value, independent of wire encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// `n`: decimal digits.
    Numeric,
    /// `a`: letters.
    Alpha,
    /// `an`: letters and digits.
    Alphanumeric,
    /// `ans`: printable ASCII (0x20–0x7E).
    AlphanumericSpecial,
    /// `z`: track-2 characters: digits and the separator `=` (or `D`).
    Track2,
    /// `b`: raw bytes.
    Binary,
}

impl Content {
    pub fn abbreviation(self) -> &'static str {
        match self {
            Content::Numeric => "n",
            Content::Alpha => "a",
            Content::Alphanumeric => "an",
            Content::AlphanumericSpecial => "ans",
            Content::Track2 => "z",
            Content::Binary => "b",
        }
    }

    /// Whether `byte` may appear in a value of this content type.
    pub fn allows(self, byte: u8) -> bool {
        match self {
            Content::Numeric => byte.is_ascii_digit(),
            Content::Alpha => byte.is_ascii_alphabetic(),
            Content::Alphanumeric => byte.is_ascii_alphanumeric(),
            Content::AlphanumericSpecial => (0x20..=0x7E).contains(&byte),
            Content::Track2 => byte.is_ascii_digit() || byte == b'=' || byte == b'D',
            Content::Binary => true,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Content::Numeric => "a digit",
            Content::Alpha => "a letter",
            Content::Alphanumeric => "a letter or digit",
            Content::AlphanumericSpecial => "a printable ASCII character",
            Content::Track2 => "a digit or '='",
            Content::Binary => "a byte",
        }
    }
}

/// How a field's value (or the MTI, or a length prefix) is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One ASCII character per character.
    Ascii,
    /// Packed BCD: two digits per byte.
    Bcd,
    /// Raw bytes (binary content; for a length prefix, a big-endian integer).
    Binary,
}

/// Fixed or variable length. Lengths are counted in characters (digits for numeric
/// fields, bytes for binary fields) unless [`FieldSpec::count`] says bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Fixed(usize),
    /// A length prefix of `digits` decimal digits (2 = LLVAR, 3 = LLLVAR, 4 = LLLLVAR)
    /// followed by at most `max` characters.
    Variable {
        digits: u8,
        max: usize,
    },
}

/// What a BCD field's length prefix counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    /// Digits (nibbles) of the value: an odd count is possible.
    Characters,
    /// Bytes on the wire.
    Bytes,
}

/// Where the pad nibble of an odd-length BCD value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BcdPad {
    /// Right-aligned digits, a leading 0 nibble (amounts, codes).
    Left,
    /// Left-aligned digits, a trailing F nibble (card numbers, track 2 on CUPS POS).
    RightF,
}

/// How sensitive a field is: what a decode for display must hide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    Public,
    /// A card number: show the first 6 and last 4 digits only.
    CardNumber,
    /// Track data: show the card number masked, hide the rest.
    Track,
    /// A PIN block, key or MAC: never shown.
    Secret,
    /// Usage-tagged private data that may carry a token (field 63 `TK`): its token tag is
    /// masked like a card number.
    TokenData,
    /// BER-TLV chip data (field 55): tags that can carry a card number, track data or the
    /// cardholder's name (5A, 57, 9F6B, 5F20) are masked.
    IccData,
}

/// One data element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub content: Content,
    pub length: Length,
    /// Encoding of the value.
    pub encoding: Encoding,
    /// Encoding of the length prefix (ignored for fixed fields).
    pub prefix: Encoding,
    /// What a BCD value's prefix counts.
    pub count: LengthUnit,
    /// Where an odd BCD value's pad nibble goes.
    pub pad: BcdPad,
    pub sensitivity: Sensitivity,
}

impl FieldSpec {
    /// A fixed-length field, ASCII-encoded (binary content is written raw).
    pub const fn fixed(name: &'static str, content: Content, length: usize) -> Self {
        Self {
            name,
            content,
            length: Length::Fixed(length),
            encoding: if matches!(content, Content::Binary) {
                Encoding::Binary
            } else {
                Encoding::Ascii
            },
            prefix: Encoding::Ascii,
            count: LengthUnit::Characters,
            pad: BcdPad::Left,
            sensitivity: Sensitivity::Public,
        }
    }

    /// A variable-length field with an ASCII prefix of `digits` digits.
    pub const fn variable(name: &'static str, content: Content, digits: u8, max: usize) -> Self {
        Self {
            length: Length::Variable { digits, max },
            ..Self::fixed(name, content, 0)
        }
    }

    pub const fn encoded(self, encoding: Encoding) -> Self {
        Self { encoding, ..self }
    }

    pub const fn prefixed(self, prefix: Encoding) -> Self {
        Self { prefix, ..self }
    }

    pub const fn counted_in(self, count: LengthUnit) -> Self {
        Self { count, ..self }
    }

    pub const fn padded(self, pad: BcdPad) -> Self {
        Self { pad, ..self }
    }

    pub const fn sensitive(self, sensitivity: Sensitivity) -> Self {
        Self {
            sensitivity,
            ..self
        }
    }

    /// The field's format in ISO notation, e.g. `n..19 LLVAR`, `b 8`, `ans..999 LLLVAR`.
    pub fn notation(&self) -> String {
        let content = self.content.abbreviation();
        match self.length {
            Length::Fixed(length) => format!("{content} {length}"),
            Length::Variable { digits, max } => {
                format!("{content}..{max} {}VAR", "L".repeat(usize::from(digits)))
            }
        }
    }

    /// Number of bytes `characters` characters of this field occupy on the wire.
    pub(crate) fn wire_length(&self, characters: usize) -> usize {
        match self.encoding {
            Encoding::Bcd => characters.div_ceil(2),
            Encoding::Ascii | Encoding::Binary => characters,
        }
    }
}

/// How the bitmap is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitmapEncoding {
    /// 8 bytes per bitmap.
    Binary,
    /// 16 hex characters per bitmap.
    Hex,
}

/// A message format: MTI and bitmap encodings and one spec per field number (2–128).
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub mti: Encoding,
    pub bitmap: BitmapEncoding,
    fields: [Option<FieldSpec>; 129],
}

/// A profile table that contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("profile field {field}: {problem}")]
pub struct ProfileError {
    pub field: u8,
    pub problem: &'static str,
}

impl Profile {
    /// A profile from `(field number, spec)` pairs; checks every spec for consistency.
    pub fn new(
        name: &'static str,
        mti: Encoding,
        bitmap: BitmapEncoding,
        specs: &[(u8, FieldSpec)],
    ) -> Result<Self, ProfileError> {
        let mut fields = [None; 129];
        for &(number, spec) in specs {
            let problem = |problem| ProfileError {
                field: number,
                problem,
            };
            if !(2..=128).contains(&number) || number == 65 {
                return Err(problem(
                    "field numbers run from 2 to 128 (1 and 65 are bitmaps)",
                ));
            }
            if fields[usize::from(number)].is_some() {
                return Err(problem("defined twice"));
            }
            match (spec.content, spec.encoding) {
                (Content::Binary, Encoding::Binary) => {}
                (Content::Binary, _) => {
                    return Err(problem("binary content must be binary-encoded"));
                }
                (_, Encoding::Binary) => {
                    return Err(problem("only binary content may be binary-encoded"));
                }
                (Content::Numeric | Content::Track2, Encoding::Bcd) => {}
                (_, Encoding::Bcd) => {
                    return Err(problem("only n and z fields can be BCD-encoded"));
                }
                _ => {}
            }
            if let Length::Variable { digits, max } = spec.length {
                if !(1..=4).contains(&digits) {
                    return Err(problem("a length prefix has 1 to 4 digits"));
                }
                let limit = 10usize.pow(u32::from(digits)) - 1;
                let counted_max = match spec.count {
                    LengthUnit::Bytes => spec.wire_length(max),
                    LengthUnit::Characters => max,
                };
                if counted_max > limit {
                    return Err(problem("maximum length does not fit the length prefix"));
                }
                if spec.prefix == Encoding::Binary && counted_max > usize::from(u16::MAX) {
                    return Err(problem("maximum length does not fit a binary prefix"));
                }
            }
            if matches!(spec.length, Length::Fixed(0)) {
                return Err(problem("a fixed field has a length"));
            }
            fields[usize::from(number)] = Some(spec);
        }
        if matches!(mti, Encoding::Binary) {
            return Err(ProfileError {
                field: 0,
                problem: "the MTI is ASCII or BCD",
            });
        }
        Ok(Self {
            name,
            mti,
            bitmap,
            fields,
        })
    }

    /// The spec of field `number`, if the profile defines it.
    pub fn field(&self, number: u8) -> Option<&FieldSpec> {
        self.fields
            .get(usize::from(number))
            .and_then(Option::as_ref)
    }

    /// Every defined field, in number order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &FieldSpec)> {
        (2u8..=128).filter_map(|n| self.field(n).map(|spec| (n, spec)))
    }
}
