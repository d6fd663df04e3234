//! Sign-on (0800, field 70 = 001): the switch answers with new PIN and MAC keys under the
//! terminal's master key in field 62 (key ‖ check value ‖ pad, twice: 40 bytes). A key
//! whose check value does not match is refused, not loaded.

use cloudpass_core::ResponseCode;
use cloudpass_crypto::{CheckValue, Hsm, KeyHandle, KeyUsage};
use cloudpass_iso8583::Mti;

use crate::terminal::{AcquirerError, Terminal, WorkingKeys};

/// Field 62's length in a sign-on answer.
const FIELD_62_LENGTH: usize = 40;

impl Terminal {
    /// Signs on: the switch sends new PIN and MAC keys under the terminal's master key.
    pub async fn sign_on(&self) -> Result<(), AcquirerError> {
        let mut request = self.header(Mti::NETWORK_REQUEST);
        request.set_text(53, "2600000000000000").set_text(70, "001");
        let answer = self.link.request(&request).await?;
        let code = answer.get_str(39).unwrap_or("");
        if code != ResponseCode::Approved.code() {
            return Err(AcquirerError::SignOnRefused(
                match ResponseCode::parse(code) {
                    Some(known) => known.to_string(),
                    None => format!("response code {code:?}"),
                },
            ));
        }
        let field62 = answer
            .get(62)
            .ok_or(AcquirerError::SignOnMalformed("no field 62"))?;
        if field62.len() != FIELD_62_LENGTH {
            return Err(AcquirerError::SignOnMalformed("field 62 is not 40 bytes"));
        }
        let keys = WorkingKeys {
            pin: self.load_key(&field62[..20], KeyUsage::PinEncryption)?,
            mac: self.load_key(&field62[20..], KeyUsage::MessageAuthentication)?,
        };
        let old = self
            .keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(keys);
        if let Some(old) = old {
            let _ = self.hsm.release(old.pin);
            let _ = self.hsm.release(old.mac);
        }
        Ok(())
    }

    /// One key of field 62: 16 bytes under the master key, then its 3-byte check value.
    fn load_key(&self, part: &[u8], usage: KeyUsage) -> Result<KeyHandle, AcquirerError> {
        let mut check = [0u8; 3];
        check.copy_from_slice(&part[16..19]);
        Ok(self
            .hsm
            .import_under_kek(self.master, usage, &part[..16], Some(CheckValue(check)))?)
    }
}
