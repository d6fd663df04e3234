//! What the issuer is sent for a token payment: the card in place of the token (its expiry,
//! the PIN block rebuilt for it), and the token channel marked in fields 56 (`PR`: the
//! PAR), 60 (terminal type, no-PIN flag, ECI, medium), 61.5 (the cryptogram passed) and 63
//! (`TK`: the token, its expiry, the scenario, requestor, device kind and wallet). To the
//! issuer it is an ordinary card payment apart from that mark.

use cloudpass_core::authorization::{PaymentChannel, Verification};
use cloudpass_core::{AccountNumber, ResponseCode, Token};
use cloudpass_crypto::{PinBlockFormat, PinBlockRef};
use cloudpass_iso8583::Message;
use cloudpass_iso8583::private::{
    FIELD_60, FIELD_61, Positional, TaggedData, Usages, token_tags, values,
};

use super::Switch;
use super::request::FinancialRequest;
use crate::vault::VaultRecord;

/// Fields of the acquirer's message the issuer's does not copy: the token's (2, 14, 35), the
/// PIN block under the terminal's key (52), what the switch marks anew (56, 60, 61, 63) and
/// the acquirer's MAC (64, 128).
const NOT_COPIED: [u8; 10] = [2, 14, 35, 52, 56, 60, 61, 63, 64, 128];

impl Switch {
    /// The issuer's 0100 or 0200 (as the acquirer sent it) for `request`.
    pub(super) fn issuer_request(
        &self,
        request: &FinancialRequest<'_>,
        token: &Token,
        record: &VaultRecord,
        verification: Verification,
    ) -> Result<Message<'static>, ResponseCode> {
        let mut issuer_request = copied_for_issuer(request);
        issuer_request
            .set_text(2, record.pan.expose())
            .set_text(14, record.card_expiry.to_wire());
        if let Some(block) = request.pin_block {
            issuer_request
                .set(
                    52,
                    self.pin_block_for_issuer(request, token, &record.pan, block)?,
                )
                .set_text(53, "2600000000000000");
        }
        issuer_request.set_text(56, usages("PR", &[(token_tags::PAR, record.par.as_str())]));
        issuer_request.set_text(
            60,
            marked_field60(request.field60.clone(), request.channel, verification),
        );
        let mut field61 = Positional::new(61, FIELD_61);
        let _ = field61.set("61.5", values::ARQC_PASSED);
        issuer_request.set_text(61, field61.to_string());
        let scenario = if request.channel == PaymentChannel::Nfc {
            "NF"
        } else {
            "IA"
        };
        issuer_request.set_text(
            63,
            usages(
                "TK",
                &[
                    (token_tags::VERIFIED, "1"),
                    (token_tags::TOKEN, token.expose()),
                    (token_tags::TOKEN_EXPIRY, &record.token_expiry.to_wire()),
                    (token_tags::SCENARIO, scenario),
                    (token_tags::REQUESTOR_ID, &record.token_requestor_id),
                    (token_tags::DEVICE_KIND, record.device_kind),
                    (token_tags::WALLET, &record.wallet),
                ],
            ),
        );
        Ok(issuer_request)
    }

    /// The PIN block under the terminal's PIN key, built with the account number the
    /// terminal had (`from`: the token, or the card), translated to the zone PIN key shared
    /// with the issuer and rebuilt with the card number (`to`).
    pub(super) fn pin_block_for_issuer(
        &self,
        request: &FinancialRequest<'_>,
        from: &dyn AccountNumber,
        to: &dyn AccountNumber,
        block: &[u8],
    ) -> Result<Vec<u8>, ResponseCode> {
        let terminal_pin_key = self
            .participants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .pin_key(request.acquirer, request.terminal)
            .ok_or(ResponseCode::NotPermittedToTerminal)?;
        let from = PinBlockRef {
            key: terminal_pin_key,
            format: PinBlockFormat::Iso0,
            block,
            account: from,
        };
        self.hsm
            .translate_pin_block(&from, self.issuer_pin_key, PinBlockFormat::Iso0, to)
            .map_err(|_| ResponseCode::PinFormatError)
    }
}

/// The issuer's message starts as the acquirer's, without what the switch rewrites.
pub(super) fn copied_for_issuer(request: &FinancialRequest<'_>) -> Message<'static> {
    let mut issuer_request = Message::new(request.mti);
    for (field, value) in request.message.fields() {
        if !NOT_COPIED.contains(&field) {
            issuer_request.set(field, value.to_vec());
        }
    }
    issuer_request
}

fn usages(usage: &str, tags: &[(&str, &str)]) -> String {
    let mut data = TaggedData::default();
    for (tag, value) in tags {
        let _ = data.set(tag, value);
    }
    let mut field = Usages::default();
    let _ = field.set(usage, &data.to_string());
    field.to_string()
}

/// Field 60 for the issuer: the acquirer's, with the token channel marked.
fn marked_field60(
    from_acquirer: Option<Positional>,
    channel: PaymentChannel,
    verification: Verification,
) -> String {
    let mut field = from_acquirer.unwrap_or_else(|| Positional::new(60, FIELD_60));
    if field.get("60.1").is_none() {
        let _ = field.set("60.1", "0000");
    }
    let (terminal_type, medium, application, eci) = match channel {
        PaymentChannel::Nfc => (
            field
                .get("60.2.5")
                .unwrap_or(values::TERMINAL_TYPE_POS)
                .to_owned(),
            values::MEDIUM_IC,
            values::IC_APPLICATION_PBOC,
            "00",
        ),
        _ => (
            values::TERMINAL_TYPE_MOBILE.to_owned(),
            values::MEDIUM_VIRTUAL,
            values::IC_APPLICATION_PBOC,
            values::ECI_DEVICE_CRYPTOGRAM,
        ),
    };
    let _ = field.set("60.2.5", &terminal_type);
    let _ = field.set(
        "60.2.6",
        if verification == Verification::NoPin {
            "1"
        } else {
            "0"
        },
    );
    let _ = field.set("60.2.8", eci);
    let _ = field.set("60.3.6", medium);
    let _ = field.set("60.3.7", application);
    field.to_string()
}
