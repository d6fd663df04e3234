//! Any body as it arrives at a UPACP endpoint or on stdin: parsing it, raw or URL-encoded,
//! must not panic, and a parsed form must survive its own URL encoding unchanged (what we
//! parse is what we would sign and send on).
#![no_main]

use cloudpass_upacp::Form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = Form::parse_either(data) {
        let again = Form::parse_urlencoded(form.to_urlencoded().as_bytes());
        assert_eq!(again.as_ref().ok(), Some(&form));
        let _ = form.string_to_sign();
    }
    let _ = Form::parse_urlencoded(data);
});
