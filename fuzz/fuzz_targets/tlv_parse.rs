//! Any bytes as field 55: parsing (and descending into constructed objects) must not panic,
//! and whatever parses must re-encode to a parseable sequence with the same values.
#![no_main]

use cloudpass_iso8583::tlv;
use libfuzzer_sys::fuzz_target;

fn walk(objects: &[tlv::Tlv<'_>], depth: usize) {
    if depth > 8 {
        return;
    }
    for object in objects {
        if object.tag.is_constructed() {
            if let Ok(children) = object.children() {
                walk(&children, depth + 1);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(objects) = tlv::parse(data) {
        walk(&objects, 0);
        let mut out = Vec::new();
        for object in &objects {
            tlv::write(object.tag, object.value, &mut out).expect("a parsed value re-encodes");
        }
        let again = tlv::parse(&out).expect("re-encoded TLVs parse");
        assert_eq!(again.len(), objects.len());
        for (a, b) in again.iter().zip(&objects) {
            assert_eq!((a.tag, a.value), (b.tag, b.value));
        }
    }
});
