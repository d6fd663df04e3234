//! Who may transact on the acquirers' port: registered acquirers (field 32), their merchants
//! (field 42) and their terminals (field 41), with each terminal's keys. A message from
//! anyone else is refused here, before anything is journaled, sent to an issuer or posted.
//!
//! The decisions are pure functions over the registry; the switch holds the registry behind
//! a lock and does the IO. This module must never let an unregistered sender through, nor
//! name in a refusal the values it refused.

use std::collections::HashMap;

use cloudpass_core::ResponseCode;
use cloudpass_crypto::KeyHandle;

/// A registered acquiring institution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquirer {
    /// Its institution ID, as field 32 carries it.
    pub id: String,
    pub name: String,
    /// Whether its terminals must MAC every financial message (fields 64/128). Off only for
    /// plain interop clients that cannot MAC; the switch logs a warning when one registers.
    pub mac_required: bool,
    /// Whether it may send card-not-present payments (a card number typed by its holder,
    /// 60.3.6 = `7`): e-commerce acquirers such as the institution gateway. Others may send
    /// only tokens.
    pub card_not_present: bool,
}

/// A merchant of an acquirer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    /// Field 42.
    pub id: String,
    pub acquirer_id: String,
}

/// A terminal of a merchant, with its master key (from the key ceremony) and its working
/// keys (from its last sign-on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// Field 41.
    pub id: String,
    pub acquirer_id: String,
    pub merchant_id: String,
    pub master: KeyHandle,
    pub pin: Option<KeyHandle>,
    pub mac: Option<KeyHandle>,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("the acquirer is not registered")]
    UnknownAcquirer,
    #[error("the merchant is not registered with that acquirer")]
    UnknownMerchant,
    #[error("an identifier is empty or longer than its field allows")]
    BadIdentifier,
}

/// Who sent a message, as fields 32, 41 and 42 name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender<'m> {
    pub acquirer: &'m str,
    pub terminal: &'m str,
    pub merchant: &'m str,
}

/// A sender the registry knows: the acquirer's setting and the terminal's keys (handles,
/// copied: nothing is allocated per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub mac_required: bool,
    pub master: KeyHandle,
    pub mac: Option<KeyHandle>,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Participants {
    acquirers: HashMap<String, Acquirer>,
    /// By (acquirer, merchant).
    merchants: HashMap<(String, String), Merchant>,
    /// By (acquirer, terminal): terminal IDs are unique within an acquirer only.
    terminals: HashMap<(String, String), Terminal>,
}

/// Longest field 32 (n..11), 41 (ans 8) and 42 (ans 15).
const ACQUIRER_ID_MAX: usize = 11;
const TERMINAL_ID_LENGTH: usize = 8;
const MERCHANT_ID_LENGTH: usize = 15;

fn valid_id(id: &str, max: usize) -> bool {
    !id.is_empty() && id.len() <= max && id.bytes().all(|b| b.is_ascii_graphic())
}

impl Participants {
    pub fn add_acquirer(&mut self, acquirer: Acquirer) -> Result<(), RegistrationError> {
        if !valid_id(&acquirer.id, ACQUIRER_ID_MAX)
            || !acquirer.id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(RegistrationError::BadIdentifier);
        }
        if !acquirer.mac_required {
            tracing::warn!(
                acquirer = %acquirer.id,
                "ACQUIRER WITHOUT MAC: messages from this acquirer's terminals are not \
                 authenticated; meant for plain interop clients, never for production"
            );
        }
        self.acquirers.insert(acquirer.id.clone(), acquirer);
        Ok(())
    }

    pub fn add_merchant(&mut self, merchant: Merchant) -> Result<(), RegistrationError> {
        if merchant.id.len() != MERCHANT_ID_LENGTH || !valid_id(&merchant.id, MERCHANT_ID_LENGTH) {
            return Err(RegistrationError::BadIdentifier);
        }
        if !self.acquirers.contains_key(&merchant.acquirer_id) {
            return Err(RegistrationError::UnknownAcquirer);
        }
        self.merchants.insert(
            (merchant.acquirer_id.clone(), merchant.id.clone()),
            merchant,
        );
        Ok(())
    }

    /// Registers a terminal (or replaces one, forgetting its working keys).
    pub fn add_terminal(
        &mut self,
        acquirer_id: &str,
        merchant_id: &str,
        terminal_id: &str,
        master: KeyHandle,
    ) -> Result<(), RegistrationError> {
        if terminal_id.len() != TERMINAL_ID_LENGTH || !valid_id(terminal_id, TERMINAL_ID_LENGTH) {
            return Err(RegistrationError::BadIdentifier);
        }
        if !self.acquirers.contains_key(acquirer_id) {
            return Err(RegistrationError::UnknownAcquirer);
        }
        if !self
            .merchants
            .contains_key(&(acquirer_id.to_owned(), merchant_id.to_owned()))
        {
            return Err(RegistrationError::UnknownMerchant);
        }
        self.terminals.insert(
            (acquirer_id.to_owned(), terminal_id.to_owned()),
            Terminal {
                id: terminal_id.to_owned(),
                acquirer_id: acquirer_id.to_owned(),
                merchant_id: merchant_id.to_owned(),
                master,
                pin: None,
                mac: None,
            },
        );
        Ok(())
    }

    /// Decides whether `sender` may transact: a missing identifier is a format error (30);
    /// an acquirer or a merchant the network does not know, or a merchant that is not the
    /// terminal's, is 03 (invalid merchant); a terminal the acquirer has not registered is 58
    /// (not permitted to terminal).
    pub fn admit(&self, sender: Sender<'_>) -> Result<Admitted, ResponseCode> {
        if sender.acquirer.is_empty() || sender.terminal.is_empty() || sender.merchant.is_empty() {
            return Err(ResponseCode::FormatError);
        }
        let acquirer = self
            .acquirers
            .get(sender.acquirer)
            .ok_or(ResponseCode::InvalidMerchant)?;
        let terminal = self
            .terminals
            .get(&(sender.acquirer.to_owned(), sender.terminal.to_owned()))
            .ok_or(ResponseCode::NotPermittedToTerminal)?;
        if terminal.merchant_id != sender.merchant {
            return Err(ResponseCode::InvalidMerchant);
        }
        Ok(Admitted {
            mac_required: acquirer.mac_required,
            master: terminal.master,
            mac: terminal.mac,
        })
    }

    /// Installs a terminal's new working keys; the keys they replace, for release.
    pub fn set_working_keys(
        &mut self,
        acquirer_id: &str,
        terminal_id: &str,
        pin: KeyHandle,
        mac: KeyHandle,
    ) -> Vec<KeyHandle> {
        let Some(terminal) = self
            .terminals
            .get_mut(&(acquirer_id.to_owned(), terminal_id.to_owned()))
        else {
            return vec![pin, mac];
        };
        let old = [terminal.pin.replace(pin), terminal.mac.replace(mac)];
        old.into_iter().flatten().collect()
    }

    /// A terminal's PIN key from its last sign-on.
    pub fn pin_key(&self, acquirer_id: &str, terminal_id: &str) -> Option<KeyHandle> {
        self.terminals
            .get(&(acquirer_id.to_owned(), terminal_id.to_owned()))
            .and_then(|terminal| terminal.pin)
    }

    /// The registered acquirers, for display.
    pub fn acquirers(&self) -> impl Iterator<Item = &Acquirer> {
        self.acquirers.values()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cloudpass_core::SeededRandom;
    use cloudpass_crypto::{Hsm, KeyUsage, MasterKey, SoftHsm};
    use std::sync::Arc;

    /// Distinct key handles from a software HSM.
    fn handles(count: usize) -> Vec<KeyHandle> {
        let hsm = SoftHsm::new(
            MasterKey::generate(&SeededRandom::new(1)),
            Arc::new(SeededRandom::new(1)),
        );
        (0..count)
            .map(|_| hsm.generate_key(KeyUsage::MessageAuthentication).unwrap())
            .collect()
    }

    fn registry() -> Participants {
        let mut registry = Participants::default();
        registry
            .add_acquirer(Acquirer {
                id: "48020000".into(),
                name: "sandbox".into(),
                mac_required: true,
                card_not_present: false,
            })
            .unwrap();
        registry
            .add_merchant(Merchant {
                id: "898310048990001".into(),
                acquirer_id: "48020000".into(),
            })
            .unwrap();
        registry
            .add_terminal("48020000", "898310048990001", "CPPOS001", handles(1)[0])
            .unwrap();
        registry
    }

    fn sender<'a>(acquirer: &'a str, terminal: &'a str, merchant: &'a str) -> Sender<'a> {
        Sender {
            acquirer,
            terminal,
            merchant,
        }
    }

    #[test]
    fn only_registered_senders_are_admitted() {
        let registry = registry();
        let admitted = registry
            .admit(sender("48020000", "CPPOS001", "898310048990001"))
            .unwrap();
        assert!(admitted.mac_required);
        assert_eq!(admitted.master, handles(1)[0]);
        assert_eq!(admitted.mac, None, "no MAC key before a sign-on");
        let refused = |s| registry.admit(s).unwrap_err();
        assert_eq!(
            refused(sender("", "CPPOS001", "898310048990001")),
            ResponseCode::FormatError
        );
        assert_eq!(
            refused(sender("48020000", "", "898310048990001")),
            ResponseCode::FormatError
        );
        assert_eq!(
            refused(sender("48020000", "CPPOS001", "")),
            ResponseCode::FormatError
        );
        assert_eq!(
            refused(sender("99999999", "CPPOS001", "898310048990001")),
            ResponseCode::InvalidMerchant
        );
        assert_eq!(
            refused(sender("48020000", "NOTATERM", "898310048990001")),
            ResponseCode::NotPermittedToTerminal
        );
        assert_eq!(
            refused(sender("48020000", "CPPOS001", "999999999999999")),
            ResponseCode::InvalidMerchant
        );
    }

    #[test]
    fn registrations_need_their_parents() {
        let mut registry = registry();
        let key = handles(1)[0];
        assert_eq!(
            registry.add_merchant(Merchant {
                id: "898310048990002".into(),
                acquirer_id: "11111111".into(),
            }),
            Err(RegistrationError::UnknownAcquirer)
        );
        assert_eq!(
            registry.add_terminal("48020000", "898310048990002", "CPPOS002", key),
            Err(RegistrationError::UnknownMerchant)
        );
        assert_eq!(
            registry.add_terminal("48020000", "898310048990001", "SHORT", key),
            Err(RegistrationError::BadIdentifier)
        );
    }

    #[test]
    fn new_working_keys_hand_back_the_old() {
        let mut registry = registry();
        let keys = handles(4);
        assert!(
            registry
                .set_working_keys("48020000", "CPPOS001", keys[0], keys[1])
                .is_empty()
        );
        assert_eq!(
            registry.set_working_keys("48020000", "CPPOS001", keys[2], keys[3]),
            vec![keys[0], keys[1]]
        );
    }
}
