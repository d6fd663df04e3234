//! Any byte stream as it arrives on a link: splitting it into frames (with and without the
//! CUPS header) must not panic, must always make progress, and must never read past a frame.
#![no_main]

use cloudpass_iso8583::framing::Framing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for framing in [
        Framing::default(),
        Framing {
            cups_header: true,
            ..Framing::default()
        },
    ] {
        let mut offset = 0;
        while let Ok(Some(frame)) = framing.read(&data[offset..]) {
            assert!(frame.consumed > 0 && frame.consumed <= data.len() - offset);
            assert!(frame.message.len() < frame.consumed);
            offset += frame.consumed;
        }
    }
});
