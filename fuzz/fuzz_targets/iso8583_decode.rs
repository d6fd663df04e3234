//! Any bytes: decoding must not panic, and whatever decodes must encode and decode back to
//! the same message. (Not always to the same bytes: a sender may announce an empty
//! secondary bitmap, which we accept and do not repeat.)
#![no_main]

use cloudpass_iso8583::profile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let profile = profile::cloudpass();
    if let Ok(message) = profile.decode(data) {
        let wire = profile.encode(&message).expect("a decoded message encodes");
        let again = profile.decode(&wire).expect("an encoded message decodes");
        assert_eq!(again, message);
        // The JSON view of any decodable message must not panic either.
        let _ = cloudpass_iso8583::json::to_json(profile, &message, false);
    }
});
