//! A shared secret held in memory (webhook and issuer-protocol signing secrets): zeroized on
//! drop, never printed.

use std::sync::Arc;

#[derive(Clone)]
pub struct Secret(Arc<zeroize::Zeroizing<Vec<u8>>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Arc::new(zeroize::Zeroizing::new(bytes)))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}
