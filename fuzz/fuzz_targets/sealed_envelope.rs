//! The sealed card profile a phone receives: any bytes as an envelope (ephemeral key, nonce,
//! ciphertext) must be refused without a panic, and a profile sealed to the phone must open
//! to exactly what was sealed — and not at all once any byte of it is changed; any bytes as
//! an opened profile's layout (the token service's JSON, then the device keys) must be
//! refused or split without a panic.
#![no_main]

use cloudpass_core::SeededRandom;
use cloudpass_crypto::card_profile;
use cloudpass_crypto::envelope::{DeviceEnvelope, DeviceKeyPair, check_public_key, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let phone = DeviceKeyPair::from_secret([0x42; 32]);
    let aad = b"token-0001";
    let _ = check_public_key(data);
    if let Ok((profile, _keys)) = card_profile::parse(data) {
        assert!(profile.len() < data.len());
    }
    if data.len() >= 44 {
        let forged = DeviceEnvelope {
            ephemeral_public_key: data[..32].try_into().expect("32 bytes"),
            nonce: data[32..44].try_into().expect("12 bytes"),
            ciphertext: data[44..].to_vec(),
        };
        assert!(
            phone.open(&forged, aad).is_err(),
            "a forged envelope opened"
        );
    }
    // Sealing and opening cost five X25519 operations; the round trip is checked for one
    // input in eight (the input decides which), the forged envelope above for every one.
    if data.len() % 8 != 0 {
        return;
    }
    let random = SeededRandom::new(data.len() as u64);
    let sealed = seal(&phone.public_key(), data, aad, &random).expect("seals to a real key");
    let opened = phone
        .open(&sealed, aad)
        .expect("opens what was sealed to it");
    assert_eq!(&opened[..], data);
    assert!(
        phone.open(&sealed, b"token-0002").is_err(),
        "opened under another token"
    );
    if !data.is_empty() {
        let mut tampered = sealed.clone();
        let at = usize::from(data[0]) % tampered.ciphertext.len();
        tampered.ciphertext[at] ^= 0x01;
        assert!(
            phone.open(&tampered, aad).is_err(),
            "a changed envelope opened"
        );
    }
});
