//! TCP framing: each message travels as `[2-byte big-endian length][optional 46-byte CUPS
//! header][message]`, the length counting everything after itself.
//!
//! These functions work on byte buffers and do no IO: a connection hands them what it has
//! read, and they say whether a whole frame is there yet.

use crate::error::{CodecError, ErrorKind, Part};

/// Largest frame body we accept: a bound on what one peer can make us buffer.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024;

/// Length of the CUPS inter-bank message header.
pub const CUPS_HEADER_LENGTH: usize = 46;

/// The 46-byte CUPS-style header that precedes a message between institutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CupsHeader {
    /// Test (flag 0x82) rather than production (0x02) traffic.
    pub test: bool,
    /// Destination institution ID, 11 characters (CUPS itself is `00010000   `).
    pub destination: [u8; 11],
    /// Source institution ID, 11 characters.
    pub source: [u8; 11],
    pub reserved: [u8; 3],
    pub batch_number: u8,
    pub transaction_info: [u8; 8],
    pub user_info: u8,
    /// Set by a party that rejects the message; `00000` otherwise.
    pub reject_code: [u8; 5],
}

fn padded<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    for (slot, byte) in out.iter_mut().zip(text.bytes()) {
        *slot = byte;
    }
    out
}

impl CupsHeader {
    /// A header from `source` to `destination` (institution IDs, space-padded).
    pub fn new(source: &str, destination: &str, test: bool) -> Self {
        Self {
            test,
            destination: padded(destination),
            source: padded(source),
            reserved: [0; 3],
            batch_number: 0,
            transaction_info: *b"00000000",
            user_info: 0,
            reject_code: *b"00000",
        }
    }

    /// The same header with source and destination swapped, for the response.
    pub fn reply(&self) -> Self {
        Self {
            destination: self.source,
            source: self.destination,
            ..*self
        }
    }

    fn write(&self, message_length: usize, out: &mut Vec<u8>) {
        out.push(CUPS_HEADER_LENGTH as u8);
        out.push(if self.test { 0x82 } else { 0x02 });
        let total = (CUPS_HEADER_LENGTH + message_length).min(9999);
        out.extend_from_slice(format!("{total:04}").as_bytes());
        out.extend_from_slice(&self.destination);
        out.extend_from_slice(&self.source);
        out.extend_from_slice(&self.reserved);
        out.push(self.batch_number);
        out.extend_from_slice(&self.transaction_info);
        out.push(self.user_info);
        out.extend_from_slice(&self.reject_code);
    }

    fn read(bytes: &[u8], offset: usize) -> Result<(Self, usize), CodecError> {
        let bad = |problem| CodecError::new(Part::Message, offset, ErrorKind::BadFrame(problem));
        if bytes.len() < CUPS_HEADER_LENGTH {
            return Err(CodecError::new(
                Part::Message,
                offset,
                ErrorKind::Truncated {
                    needed: CUPS_HEADER_LENGTH,
                    available: bytes.len(),
                },
            ));
        }
        if usize::from(bytes[0]) != CUPS_HEADER_LENGTH {
            return Err(bad("CUPS header length byte is not 46"));
        }
        let test = match bytes[1] {
            0x02 => false,
            0x82 => true,
            _ => return Err(bad("CUPS header flag is neither 0x02 nor 0x82")),
        };
        let total = std::str::from_utf8(&bytes[2..6])
            .ok()
            .filter(|text| text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<usize>().ok())
            .ok_or(bad("CUPS header total length is not four digits"))?;
        let mut header = Self::new("", "", test);
        header.destination.copy_from_slice(&bytes[6..17]);
        header.source.copy_from_slice(&bytes[17..28]);
        header.reserved.copy_from_slice(&bytes[28..31]);
        header.batch_number = bytes[31];
        header.transaction_info.copy_from_slice(&bytes[32..40]);
        header.user_info = bytes[40];
        header.reject_code.copy_from_slice(&bytes[41..46]);
        Ok((header, total))
    }
}

/// A frame found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Option<CupsHeader>,
    pub message: &'a [u8],
    /// Bytes of the buffer the frame occupied, prefix included.
    pub consumed: usize,
}

/// How messages are framed on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Whether a CUPS header follows the length prefix on every frame.
    pub cups_header: bool,
    /// Without `cups_header`: whether a frame may carry the header anyway. It is recognised
    /// by its first byte, the header length 0x2E, which no MTI begins with (ASCII MTIs begin
    /// with a digit, BCD ones with a byte of at most 0x09).
    pub cups_header_optional: bool,
    /// The largest frame body accepted.
    pub max_frame: usize,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            cups_header: false,
            cups_header_optional: false,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

impl Framing {
    /// Appends one framed message to `out`, with `header` if given (or a default one where
    /// every frame carries a header).
    pub fn write(
        &self,
        header: Option<&CupsHeader>,
        message: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let default = CupsHeader::new("", "", false);
        let header = header.or(self.cups_header.then_some(&default));
        let header_length = if header.is_some() {
            CUPS_HEADER_LENGTH
        } else {
            0
        };
        let body = header_length + message.len();
        if body > self.max_frame || body > usize::from(u16::MAX) {
            return Err(CodecError::new(
                Part::Message,
                0,
                ErrorKind::TooLong {
                    length: body,
                    max: self.max_frame.min(usize::from(u16::MAX)),
                },
            ));
        }
        out.extend_from_slice(&(body as u16).to_be_bytes());
        if let Some(header) = header {
            header.write(message.len(), out);
        }
        out.extend_from_slice(message);
        Ok(())
    }

    /// The first whole frame in `buffer`, `Ok(None)` if more bytes are needed, or an error
    /// if the buffer can never become a valid frame (the connection should then be closed).
    pub fn read<'a>(&self, buffer: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        let Some(prefix) = buffer.get(..2) else {
            return Ok(None);
        };
        let body = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        if body > self.max_frame {
            return Err(CodecError::new(
                Part::Message,
                0,
                ErrorKind::TooLong {
                    length: body,
                    max: self.max_frame,
                },
            ));
        }
        if body == 0 {
            return Err(CodecError::new(
                Part::Message,
                0,
                ErrorKind::BadFrame("frame of length 0"),
            ));
        }
        let Some(frame) = buffer.get(2..2 + body) else {
            return Ok(None);
        };
        let header_present = self.cups_header
            || (self.cups_header_optional && frame.first() == Some(&(CUPS_HEADER_LENGTH as u8)));
        if !header_present {
            return Ok(Some(Frame {
                header: None,
                message: frame,
                consumed: 2 + body,
            }));
        }
        let (header, total) = CupsHeader::read(frame, 2)?;
        if total != body {
            return Err(CodecError::new(
                Part::Message,
                4,
                ErrorKind::BadFrame("CUPS header total length disagrees with the length prefix"),
            ));
        }
        Ok(Some(Frame {
            header: Some(header),
            message: &frame[CUPS_HEADER_LENGTH..],
            consumed: 2 + body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_header_is_read_when_present_and_written_back() {
        let framing = Framing {
            cups_header_optional: true,
            ..Framing::default()
        };
        let header = CupsHeader::new("48020000", "00010000", true);
        let mut stream = Vec::new();
        framing
            .write(Some(&header), b"0800abc", &mut stream)
            .unwrap();
        framing.write(None, b"0800plain", &mut stream).unwrap();
        let first = framing.read(&stream).unwrap().unwrap();
        assert_eq!(first.header, Some(header));
        assert_eq!(first.message, b"0800abc");
        let second = framing.read(&stream[first.consumed..]).unwrap().unwrap();
        assert_eq!(second.header, None);
        assert_eq!(second.message, b"0800plain");
        // Without the option, the header's bytes are taken for the message.
        let strict = Framing::default().read(&stream).unwrap().unwrap();
        assert_eq!(strict.header, None);
        assert_eq!(strict.message.len(), 46 + 7);
    }

    #[test]
    fn plain_frames_split_a_stream() {
        let framing = Framing::default();
        let mut stream = Vec::new();
        framing.write(None, b"first", &mut stream).unwrap();
        framing.write(None, b"second message", &mut stream).unwrap();
        assert_eq!(&stream[..2], &[0, 5]);
        let frame = framing.read(&stream).unwrap().unwrap();
        assert_eq!(frame.message, b"first");
        let next = framing.read(&stream[frame.consumed..]).unwrap().unwrap();
        assert_eq!(next.message, b"second message");
        assert_eq!(framing.read(&stream[..1]).unwrap(), None);
        assert_eq!(framing.read(&stream[..6]).unwrap(), None);
    }

    #[test]
    fn oversized_and_empty_frames_are_refused() {
        let framing = Framing {
            max_frame: 100,
            ..Framing::default()
        };
        assert!(matches!(
            framing.read(&[0x01, 0x00]),
            Err(CodecError {
                kind: ErrorKind::TooLong {
                    length: 256,
                    max: 100
                },
                ..
            })
        ));
        assert!(framing.read(&[0, 0]).is_err());
        assert!(framing.write(None, &[0u8; 101], &mut Vec::new()).is_err());
    }

    #[test]
    fn cups_header_round_trip() {
        let framing = Framing {
            cups_header: true,
            ..Framing::default()
        };
        let header = CupsHeader::new("48020000", "00010000", true);
        let mut stream = Vec::new();
        framing
            .write(Some(&header), b"0800message", &mut stream)
            .unwrap();
        assert_eq!(stream.len(), 2 + 46 + 11);
        assert_eq!(stream[2], 46);
        assert_eq!(stream[3], 0x82);
        assert_eq!(&stream[4..8], b"0057");
        let frame = framing.read(&stream).unwrap().unwrap();
        assert_eq!(frame.header, Some(header));
        assert_eq!(frame.message, b"0800message");
        assert_eq!(header.reply().destination, header.source);

        let mut broken = stream.clone();
        broken[4] = b'9';
        assert!(framing.read(&broken).is_err());
        broken = stream.clone();
        broken[3] = 0x01;
        assert!(framing.read(&broken).is_err());
    }
}
