//! Encoding and decoding, driven entirely by a [`Profile`]'s table.
//!
//! Decoding checks every byte it reads against the field's spec (length prefix, maximum,
//! character set, BCD nibbles) and stops at the first problem with the field and offset;
//! arbitrary input never panics. Encoding refuses any value its field's spec would not
//! decode back to the same value.

use std::borrow::Cow;

use crate::error::{CodecError, ErrorKind, Part};
use crate::message::{Message, Mti};
use crate::spec::{
    BcdPad, BitmapEncoding, Content, Encoding, FieldSpec, Length, LengthUnit, Profile,
};

fn field_part(number: u8, spec: Option<&FieldSpec>) -> Part {
    Part::Field {
        number,
        name: spec.map_or("", |s| s.name),
    }
}

/// Reads `needed` bytes at `offset`, or says how many were missing.
fn take(input: &[u8], offset: usize, needed: usize, part: Part) -> Result<&[u8], CodecError> {
    let available = input.len().saturating_sub(offset);
    if available < needed {
        return Err(CodecError::new(
            part,
            offset,
            ErrorKind::Truncated { needed, available },
        ));
    }
    Ok(&input[offset..offset + needed])
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

impl Profile {
    /// Decodes one message (without framing). Values of ASCII and binary fields borrow from
    /// `input`.
    pub fn decode<'a>(&self, input: &'a [u8]) -> Result<Message<'a>, CodecError> {
        let (message, fault) = self.decode_until_fault(input)?;
        match fault {
            Some(fault) => Err(fault),
            None => Ok(message),
        }
    }

    /// What can be read of a message the codec refuses: its MTI and the fields before the
    /// first fault, in order (`None` when not even the MTI and bitmaps can be read). For
    /// answering a bad message in terms its sender can match, never for acting on it.
    pub fn decode_leading<'a>(&self, input: &'a [u8]) -> Option<Message<'a>> {
        self.decode_until_fault(input)
            .ok()
            .map(|(message, _)| message)
    }

    /// Decodes the MTI and bitmaps (an error if they cannot be read), then fields in order
    /// until the first fault: the fields read, and the fault.
    fn decode_until_fault<'a>(
        &self,
        input: &'a [u8],
    ) -> Result<(Message<'a>, Option<CodecError>), CodecError> {
        let (mti, mut offset) = match self.mti {
            Encoding::Bcd => {
                let raw = take(input, 0, 2, Part::Mti)?;
                let digits = [raw[0] >> 4, raw[0] & 0x0F, raw[1] >> 4, raw[1] & 0x0F];
                if digits.iter().any(|&d| d > 9) {
                    return Err(CodecError::new(Part::Mti, 0, ErrorKind::BadMti));
                }
                (Mti::from_bytes(&digits.map(|d| b'0' + d)), 2)
            }
            Encoding::Ascii | Encoding::Binary => {
                let raw = take(input, 0, 4, Part::Mti)?;
                (Mti::from_bytes(raw), 4)
            }
        };
        let mti = mti.map_err(|_| CodecError::new(Part::Mti, 0, ErrorKind::BadMti))?;

        let primary = self.read_bitmap(input, &mut offset)?;
        let secondary = if primary & (1 << 63) != 0 {
            self.read_bitmap(input, &mut offset)?
        } else {
            0
        };

        let present = primary.count_ones() + secondary.count_ones();
        let mut message = Message::with_capacity(mti, present as usize);
        for number in 2u8..=128 {
            let bit = if number <= 64 {
                primary & (1 << (64 - u32::from(number))) != 0
            } else {
                secondary & (1 << (128 - u32::from(number))) != 0
            };
            if !bit {
                continue;
            }
            let spec = self.field(number);
            let Some(spec) = spec else {
                let fault =
                    CodecError::new(field_part(number, spec), offset, ErrorKind::UndefinedField);
                return Ok((message, Some(fault)));
            };
            match decode_field(number, spec, input, offset) {
                Ok((value, consumed)) => {
                    message.push_in_order(number, value);
                    offset += consumed;
                }
                Err(fault) => return Ok((message, Some(fault))),
            }
        }
        if offset != input.len() {
            let fault = CodecError::new(
                Part::Message,
                offset,
                ErrorKind::TrailingBytes {
                    count: input.len() - offset,
                },
            );
            return Ok((message, Some(fault)));
        }
        Ok((message, None))
    }

    fn read_bitmap(&self, input: &[u8], offset: &mut usize) -> Result<u64, CodecError> {
        match self.bitmap {
            BitmapEncoding::Binary => {
                let raw = take(input, *offset, 8, Part::Bitmap)?;
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(raw);
                *offset += 8;
                Ok(u64::from_be_bytes(bytes))
            }
            BitmapEncoding::Hex => {
                let raw = take(input, *offset, 16, Part::Bitmap)?;
                let mut value = 0u64;
                for &c in raw {
                    let nibble = hex_value(c).ok_or(CodecError::new(
                        Part::Bitmap,
                        *offset,
                        ErrorKind::BadHex,
                    ))?;
                    value = value << 4 | u64::from(nibble);
                }
                *offset += 16;
                Ok(value)
            }
        }
    }

    /// Encodes `message` onto the end of `out`. On error `out` is left as it was.
    pub fn encode_into(&self, message: &Message<'_>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        let result = self.encode_inner(message, out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Encodes `message` into a new buffer.
    pub fn encode(&self, message: &Message<'_>) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(512);
        self.encode_into(message, &mut out)?;
        Ok(out)
    }

    fn encode_inner(
        &self,
        message: &Message<'_>,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), CodecError> {
        let mti = message.mti();
        match self.mti {
            Encoding::Bcd => {
                let d = mti.as_bytes().map(|c| c - b'0');
                out.extend_from_slice(&[d[0] << 4 | d[1], d[2] << 4 | d[3]]);
            }
            Encoding::Ascii | Encoding::Binary => out.extend_from_slice(mti.as_bytes()),
        }

        let mut primary = 0u64;
        let mut secondary = 0u64;
        for (number, _) in message.fields() {
            match number {
                2..=64 => primary |= 1 << (64 - u32::from(number)),
                66..=128 => secondary |= 1 << (128 - u32::from(number)),
                _ => {
                    let offset = out.len() - start;
                    return Err(CodecError::new(
                        field_part(number, None),
                        offset,
                        ErrorKind::UndefinedField,
                    ));
                }
            }
        }
        if secondary != 0 {
            primary |= 1 << 63;
        }
        self.write_bitmap(primary, out);
        if secondary != 0 {
            self.write_bitmap(secondary, out);
        }

        for (number, value) in message.fields() {
            let offset = out.len() - start;
            let spec = self.field(number);
            let Some(spec) = spec else {
                return Err(CodecError::new(
                    field_part(number, spec),
                    offset,
                    ErrorKind::UndefinedField,
                ));
            };
            encode_field(number, spec, value, out, offset)?;
        }
        Ok(())
    }

    fn write_bitmap(&self, bitmap: u64, out: &mut Vec<u8>) {
        match self.bitmap {
            BitmapEncoding::Binary => out.extend_from_slice(&bitmap.to_be_bytes()),
            BitmapEncoding::Hex => {
                for shift in (0..16).rev() {
                    out.push(HEX[((bitmap >> (shift * 4)) & 0xF) as usize]);
                }
            }
        }
    }
}

/// Decodes one field starting at `offset`; returns the value and the bytes consumed.
fn decode_field<'a>(
    number: u8,
    spec: &FieldSpec,
    input: &'a [u8],
    offset: usize,
) -> Result<(Cow<'a, [u8]>, usize), CodecError> {
    let part = Part::Field {
        number,
        name: spec.name,
    };
    let error = |at: usize, kind| CodecError::new(part, at, kind);

    // How many characters, and how many wire bytes.
    let (characters, wire_bytes, prefix_length) = match spec.length {
        Length::Fixed(characters) => (characters, spec.wire_length(characters), 0),
        Length::Variable { digits, max } => {
            let (count, prefix_length) = read_length_prefix(spec, digits, input, offset, part)?;
            let (characters, wire_bytes) = match (spec.encoding, spec.count) {
                (Encoding::Bcd, LengthUnit::Bytes) => (count * 2, count),
                _ => (count, spec.wire_length(count)),
            };
            let (length, limit) = match (spec.encoding, spec.count) {
                (Encoding::Bcd, LengthUnit::Bytes) => (wire_bytes, spec.wire_length(max)),
                _ => (characters, max),
            };
            if length > limit {
                return Err(error(offset, ErrorKind::TooLong { length, max: limit }));
            }
            (characters, wire_bytes, prefix_length)
        }
    };

    let value_offset = offset + prefix_length;
    let raw = take(input, value_offset, wire_bytes, part)?;
    let value = match spec.encoding {
        Encoding::Binary => Cow::Borrowed(raw),
        Encoding::Ascii => {
            if let Some(position) = raw.iter().position(|&b| !spec.content.allows(b)) {
                return Err(error(
                    value_offset + position,
                    ErrorKind::BadCharacter {
                        position,
                        expected: spec.content.description(),
                    },
                ));
            }
            Cow::Borrowed(raw)
        }
        Encoding::Bcd => Cow::Owned(unpack_bcd(spec, raw, characters).map_err(|position| {
            error(value_offset + position / 2, ErrorKind::BadBcd { position })
        })?),
    };
    Ok((value, prefix_length + wire_bytes))
}

fn read_length_prefix(
    spec: &FieldSpec,
    digits: u8,
    input: &[u8],
    offset: usize,
    part: Part,
) -> Result<(usize, usize), CodecError> {
    let bad = CodecError::new(part, offset, ErrorKind::BadLengthPrefix);
    match spec.prefix {
        Encoding::Ascii => {
            let raw = take(input, offset, usize::from(digits), part)?;
            let mut count = 0usize;
            for &c in raw {
                if !c.is_ascii_digit() {
                    return Err(bad);
                }
                count = count * 10 + usize::from(c - b'0');
            }
            Ok((count, raw.len()))
        }
        Encoding::Bcd => {
            let bytes = usize::from(digits).div_ceil(2);
            let raw = take(input, offset, bytes, part)?;
            let mut count = 0usize;
            for &byte in raw {
                let (high, low) = (byte >> 4, byte & 0x0F);
                if high > 9 || low > 9 {
                    return Err(bad);
                }
                count = count * 100 + usize::from(high) * 10 + usize::from(low);
            }
            Ok((count, bytes))
        }
        Encoding::Binary => {
            let bytes = if digits <= 2 { 1 } else { 2 };
            let raw = take(input, offset, bytes, part)?;
            let count = raw
                .iter()
                .fold(0usize, |count, &b| count << 8 | usize::from(b));
            Ok((count, bytes))
        }
    }
}

/// BCD bytes → ASCII characters. An error carries the nibble position.
fn unpack_bcd(spec: &FieldSpec, raw: &[u8], characters: usize) -> Result<Vec<u8>, usize> {
    let nibbles = raw.len() * 2;
    let mut out = Vec::with_capacity(nibbles);
    // Which nibble, if any, is padding.
    let (skip_first, skip_last) = match (spec.pad, characters < nibbles) {
        (_, false) => (false, false),
        (BcdPad::Left, true) => (true, false),
        (BcdPad::RightF, true) => (false, true),
    };
    for position in 0..nibbles {
        let byte = raw[position / 2];
        let nibble = if position % 2 == 0 {
            byte >> 4
        } else {
            byte & 0x0F
        };
        let is_pad = (skip_first && position == 0) || (skip_last && position == nibbles - 1);
        if is_pad {
            let expected = if spec.pad == BcdPad::Left { 0 } else { 0x0F };
            if nibble != expected {
                return Err(position);
            }
            continue;
        }
        match nibble {
            0..=9 => out.push(b'0' + nibble),
            0x0D if spec.content == Content::Track2 => out.push(b'='),
            // A byte-counted, right-padded value ends in F when its digit count is odd.
            0x0F if spec.count == LengthUnit::Bytes
                && spec.pad == BcdPad::RightF
                && position == nibbles - 1 => {}
            _ => return Err(position),
        }
    }
    Ok(out)
}

fn encode_field(
    number: u8,
    spec: &FieldSpec,
    value: &[u8],
    out: &mut Vec<u8>,
    offset: usize,
) -> Result<(), CodecError> {
    let part = Part::Field {
        number,
        name: spec.name,
    };
    let error = |kind| CodecError::new(part, offset, kind);

    if let Some(position) = value.iter().position(|&b| !spec.content.allows(b)) {
        return Err(error(ErrorKind::BadCharacter {
            position,
            expected: spec.content.description(),
        }));
    }
    let characters = value.len();
    match spec.length {
        Length::Fixed(expected) => {
            if characters != expected {
                return Err(error(ErrorKind::WrongLength {
                    length: characters,
                    expected,
                }));
            }
        }
        Length::Variable { digits, max } => {
            if characters > max {
                return Err(error(ErrorKind::TooLong {
                    length: characters,
                    max,
                }));
            }
            let count = match (spec.encoding, spec.count) {
                (Encoding::Bcd, LengthUnit::Bytes) => spec.wire_length(characters),
                _ => characters,
            };
            write_length_prefix(spec.prefix, digits, count, out);
        }
    }
    match spec.encoding {
        Encoding::Ascii | Encoding::Binary => out.extend_from_slice(value),
        Encoding::Bcd => pack_bcd(spec.pad, value, out),
    }
    Ok(())
}

fn write_length_prefix(prefix: Encoding, digits: u8, count: usize, out: &mut Vec<u8>) {
    match prefix {
        Encoding::Ascii => {
            for place in (0..u32::from(digits)).rev() {
                out.push(b'0' + ((count / 10usize.pow(place)) % 10) as u8);
            }
        }
        Encoding::Bcd => {
            let bytes = usize::from(digits).div_ceil(2);
            for index in (0..bytes).rev() {
                let pair = (count / 100usize.pow(index as u32)) % 100;
                out.push((((pair / 10) << 4) | (pair % 10)) as u8);
            }
        }
        Encoding::Binary => {
            if digits <= 2 {
                out.push((count & 0xFF) as u8);
            } else {
                out.extend_from_slice(&((count & 0xFFFF) as u16).to_be_bytes());
            }
        }
    }
}

fn bcd_nibble(c: u8) -> u8 {
    match c {
        b'=' | b'D' => 0x0D,
        digit => digit - b'0',
    }
}

fn pack_bcd(pad: BcdPad, value: &[u8], out: &mut Vec<u8>) {
    let odd = value.len() % 2 == 1;
    let mut nibbles = value.iter().map(|&c| bcd_nibble(c));
    if odd && pad == BcdPad::Left {
        out.push(nibbles.next().unwrap_or(0));
    }
    loop {
        match (nibbles.next(), nibbles.next()) {
            (Some(high), Some(low)) => out.push(high << 4 | low),
            (Some(high), None) => out.push(high << 4 | 0x0F),
            _ => break,
        }
    }
}
