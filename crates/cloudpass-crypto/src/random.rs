//! The operating system's randomness behind the core's `Random` trait.

use cloudpass_core::Random;

/// Random bytes from the operating system (getrandom).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buffer: &mut [u8]) {
        // The kernel's generator does not fail once the system is up; if it ever does, no
        // key, nonce or PIN-block filler may be made from anything weaker, so stop.
        if getrandom::fill(buffer).is_err() {
            eprintln!("fatal: the operating system's random number generator failed");
            std::process::abort();
        }
    }
}
