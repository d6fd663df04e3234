//! Merchants the gateway serves: who they are, how their requests are signed, and what they
//! may do. The registry is read-only here; the wiring fills it (the sandbox seeds one).

use std::collections::HashMap;

use cloudpass_upacp::Certificate;
use zeroize::Zeroizing;

/// What a merchant may do (reference/upacp.md §2; a separate SDK-WAP permission is the next
/// issue's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    pub app_consume: bool,
    pub api_wap: bool,
    pub sdk_wap: bool,
    pub undo: bool,
    pub refund: bool,
    pub query: bool,
    /// Card details (`accNo`, `payCardType`, …) in notifications and queries.
    pub card_details: bool,
}

impl Permissions {
    pub const ALL: Permissions = Permissions {
        app_consume: true,
        api_wap: true,
        sdk_wap: true,
        undo: true,
        refund: true,
        query: true,
        card_details: true,
    };
}

pub struct Merchant {
    /// `merId`, 15 characters.
    pub mer_id: String,
    pub name: String,
    /// The certificate its requests are signed with (signMethod 01), found by `certId`.
    pub certificate: Option<Certificate>,
    /// The secure key of signMethod 11 and 12.
    pub secure_key: Option<Zeroizing<Vec<u8>>>,
    pub permissions: Permissions,
}

impl std::fmt::Debug for Merchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merchant")
            .field("mer_id", &self.mer_id)
            .field("certificate", &self.certificate)
            .field("secure_key", &self.secure_key.as_ref().map(|_| "…"))
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// The merchants, by `merId`.
#[derive(Debug, Default)]
pub struct Merchants {
    by_id: HashMap<String, Merchant>,
}

impl Merchants {
    pub fn add(&mut self, merchant: Merchant) {
        self.by_id.insert(merchant.mer_id.clone(), merchant);
    }

    pub fn get(&self, mer_id: &str) -> Option<&Merchant> {
        self.by_id.get(mer_id)
    }
}
