//! Sign-on (0800, 70 = 001): a registered terminal gets fresh PIN and MAC keys.

use cloudpass_core::ResponseCode;
use cloudpass_crypto::{KeyHandle, KeyUsage};
use cloudpass_iso8583::Message;

use super::{Switch, network_answer};
use crate::participants::Sender;

impl Switch {
    /// Sign-on (70 = 001) of an admitted terminal: new PIN and MAC keys under its master
    /// key, in field 62 (key ‖ check value ‖ key ‖ check value, 40 bytes).
    pub(super) fn sign_on(
        &self,
        request: &Message<'_>,
        terminal: Sender<'_>,
        master: KeyHandle,
    ) -> Message<'static> {
        let mut response = network_answer(request, ResponseCode::Approved);
        let issue = || -> Result<(KeyHandle, KeyHandle, Vec<u8>), cloudpass_crypto::HsmError> {
            let pin = self.hsm.generate_key(KeyUsage::PinEncryption)?;
            let mac = self.hsm.generate_key(KeyUsage::MessageAuthentication)?;
            let mut field62 = Vec::with_capacity(40);
            for key in [pin, mac] {
                field62.extend_from_slice(&self.hsm.export_under_kek(key, master)?);
                field62.extend_from_slice(&self.hsm.check_value(key)?.0);
                field62.push(0);
            }
            Ok((pin, mac, field62))
        };
        match issue() {
            Ok((pin, mac, field62)) => {
                let replaced = self.participants_mut().set_working_keys(
                    terminal.acquirer,
                    terminal.terminal,
                    pin,
                    mac,
                );
                for key in replaced {
                    let _ = self.hsm.release(key);
                }
                response.set(62, field62);
            }
            Err(error) => {
                tracing::error!(error = %error, "sign-on: key generation failed");
                response.set_text(39, ResponseCode::SystemMalfunction.code());
            }
        }
        response
    }
}
