//! Sign-on (0800, 70 = 001): a registered terminal gets fresh PIN and MAC keys. They are kept
//! in the store wrapped under the switch's master key before the answer leaves, so a
//! restarted switch still checks the terminal's MACs and PIN blocks
//! ([`Switch::restore_working_keys`]): a terminal that signed on before a restart is not
//! refused A0 after it (its reversals above all).

use cloudpass_core::ResponseCode;
use cloudpass_crypto::{KeyHandle, KeyUsage, WrappedKey};
use cloudpass_iso8583::Message;
use cloudpass_store::{StoreError, TerminalKeyStore, TerminalKeysRow};

use super::{Switch, network_answer};
use crate::participants::Sender;

/// New working keys: handles, their field 62, and their wrapped form for the store.
struct Issued {
    pin: KeyHandle,
    mac: KeyHandle,
    field62: Vec<u8>,
    wrapped: (WrappedKey, WrappedKey),
}

impl Switch {
    /// Sign-on (70 = 001) of an admitted terminal: new PIN and MAC keys under its master
    /// key, in field 62 (key ‖ check value ‖ key ‖ check value, 40 bytes).
    pub(super) async fn sign_on(
        &self,
        request: &Message<'_>,
        terminal: Sender<'_>,
        master: KeyHandle,
    ) -> Message<'static> {
        let mut response = network_answer(request, ResponseCode::Approved);
        let issued = match self.issue_working_keys(master) {
            Ok(issued) => issued,
            Err(error) => {
                tracing::error!(error = %error, "sign-on: key generation failed");
                response.set_text(39, ResponseCode::SystemMalfunction.code());
                return response;
            }
        };
        let row = TerminalKeysRow {
            acquirer_id: terminal.acquirer.to_owned(),
            terminal_id: terminal.terminal.to_owned(),
            pin_key: issued.wrapped.0.to_text(),
            mac_key: issued.wrapped.1.to_text(),
            signed_on_at: self.clock.now_millis(),
        };
        if let Err(error) = self.store.save_terminal_keys(&row).await {
            // Keys the store does not hold would be lost with the process: none are given.
            tracing::error!(error = %error, "sign-on: the working keys could not be kept");
            let _ = self.hsm.release(issued.pin);
            let _ = self.hsm.release(issued.mac);
            response.set_text(39, ResponseCode::SystemMalfunction.code());
            return response;
        }
        let replaced = self.participants_mut().set_working_keys(
            terminal.acquirer,
            terminal.terminal,
            issued.pin,
            issued.mac,
        );
        for key in replaced {
            let _ = self.hsm.release(key);
        }
        response.set(62, issued.field62);
        response
    }

    fn issue_working_keys(&self, master: KeyHandle) -> Result<Issued, cloudpass_crypto::HsmError> {
        let pin = self.hsm.generate_key(KeyUsage::PinEncryption)?;
        let mac = self.hsm.generate_key(KeyUsage::MessageAuthentication)?;
        let mut field62 = Vec::with_capacity(40);
        for key in [pin, mac] {
            field62.extend_from_slice(&self.hsm.export_under_kek(key, master)?);
            field62.extend_from_slice(&self.hsm.check_value(key)?.0);
            field62.push(0);
        }
        let wrapped = (self.hsm.wrap(pin)?, self.hsm.wrap(mac)?);
        Ok(Issued {
            pin,
            mac,
            field62,
            wrapped,
        })
    }

    /// Installs the working keys the store keeps for the registered terminals (call after
    /// registering them); how many terminals got theirs back. A key that does not unwrap
    /// (another master key) is skipped: that terminal signs on again.
    pub async fn restore_working_keys(&self) -> Result<usize, StoreError> {
        let rows = self.store.terminal_keys().await?;
        let mut restored = 0;
        for row in rows {
            let load = |text: &str| {
                WrappedKey::from_text(text).and_then(|wrapped| self.hsm.load_wrapped(&wrapped))
            };
            let (pin, mac) = match (load(&row.pin_key), load(&row.mac_key)) {
                (Ok(pin), Ok(mac)) => (pin, mac),
                (pin, mac) => {
                    tracing::warn!(terminal = %row.terminal_id, "switch: a terminal's kept working keys do not unwrap; it must sign on again");
                    for key in [pin, mac].into_iter().flatten() {
                        let _ = self.hsm.release(key);
                    }
                    continue;
                }
            };
            let mut participants = self.participants_mut();
            if participants
                .pin_key(&row.acquirer_id, &row.terminal_id)
                .is_some()
            {
                drop(participants);
                let _ = self.hsm.release(pin);
                let _ = self.hsm.release(mac);
                continue;
            }
            // A terminal that is not registered hands the keys straight back.
            let returned =
                participants.set_working_keys(&row.acquirer_id, &row.terminal_id, pin, mac);
            drop(participants);
            if returned.is_empty() {
                restored += 1;
            }
            for key in returned {
                let _ = self.hsm.release(key);
            }
        }
        Ok(restored)
    }
}
