//! Paying a TN inside the app (控件支付's confirm screen, `/wallet/pay?tn=…`): the person
//! picks one of the app's own device cards (the app as an HCE device), the app's device card
//! makes an in-app cryptogram over the gateway's terminal data for the order, and when the
//! amount is over the card's online no-PIN limit — which the bank set and the token service
//! put into the card's profile — the app asks for the payment password. The gateway sends it
//! to the switch as an in-app purchase; the answer comes back at once: paid (debit or credit
//! told apart) or not, and the merchant is notified as for any payment.

use std::sync::Arc;

use cloudpass_crypto::Pin;
use cloudpass_gateway::device_pay::{DeviceOrder, DevicePayment};
use cloudpass_gateway::{CardKind, Gateway, PayError, PayResult};

use crate::account::SignedIn;
use crate::devices::{DeviceError, Devices};

/// One of the app's device cards that can pay in-app.
#[derive(Debug, Clone)]
pub struct AppCard {
    pub device_id: String,
    pub token_id: String,
    pub card_last4: String,
    pub token_last4: String,
    pub credit: bool,
    pub is_default: bool,
}

/// Why the app did not pay.
#[derive(Debug, thiserror::Error)]
pub enum AppPayError {
    #[error("payments inside the app are not open here")]
    NoGateway,
    #[error("{0}")]
    Device(#[from] DeviceError),
    #[error("choose one of this app's cards; add a card to the app (HCE) under My devices")]
    NoCard,
    #[error("the payment password is 4 to 12 digits")]
    BadPassword,
    #[error("the payment form did not say what amount was confirmed; open the payment again")]
    NoConfirmedAmount,
    #[error("{0}")]
    Gateway(#[from] PayError),
}

/// What came of a payment the person confirmed.
pub enum AppPaid {
    /// Over the card's online no-PIN limit: ask for the payment password and confirm again.
    NeedsPassword,
    Done(PayResult),
}

/// The app's payments of TNs.
pub struct AppPay {
    pub(crate) gateway: Option<Arc<Gateway>>,
}

impl AppPay {
    /// The order `tn`, as the confirm screen shows it.
    pub async fn order(&self, tn: &str) -> Result<DeviceOrder, AppPayError> {
        let gateway = self.gateway.as_ref().ok_or(AppPayError::NoGateway)?;
        Ok(gateway.device_order(tn.trim()).await?)
    }

    /// The account's device cards on the app itself (HCE) that may pay in-app, the default
    /// first.
    pub async fn cards(
        &self,
        devices: &Devices,
        person: &SignedIn,
    ) -> Result<Vec<AppCard>, AppPayError> {
        let mut cards: Vec<AppCard> = devices
            .list(person)
            .await?
            .into_iter()
            .filter(|listed| listed.device.kind == "hce" && listed.state == "active")
            .flat_map(|listed| {
                let device_id = listed.device.id.clone();
                listed
                    .cards
                    .into_iter()
                    .filter(|token| token.status == "active" && token.domains.contains(&"in_app"))
                    .map(move |token| AppCard {
                        device_id: device_id.clone(),
                        token_id: token.token_id,
                        card_last4: token.card_last4,
                        token_last4: token.token_last4,
                        credit: token.funding == "credit",
                        is_default: token.is_default,
                    })
            })
            .collect();
        cards.sort_by_key(|card| !card.is_default);
        Ok(cards)
    }

    /// Pays `tn` with the app's card `token_id`, with the payment password if given, for
    /// `confirmed` (fen): the charge the screen showed. When the charge is no longer that
    /// (a campaign's budget ran out since), nothing is sent.
    pub async fn pay(
        &self,
        devices: &Devices,
        person: &SignedIn,
        tn: &str,
        token_id: &str,
        password: Option<&str>,
        confirmed: Option<&str>,
    ) -> Result<AppPaid, AppPayError> {
        let gateway = self.gateway.as_ref().ok_or(AppPayError::NoGateway)?;
        let card = self
            .cards(devices, person)
            .await?
            .into_iter()
            .find(|card| card.token_id == token_id)
            .ok_or(AppPayError::NoCard)?;
        let password = password
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| Pin::parse(p).map_err(|_| AppPayError::BadPassword))
            .transpose()?;
        let confirmed: u64 = confirmed
            .and_then(|fen| fen.trim().parse().ok())
            .ok_or(AppPayError::NoConfirmedAmount)?;
        let order = gateway.device_order(tn.trim()).await?;
        if order.charge.minor_units() != confirmed {
            return Err(PayError::DiscountChanged.into());
        }
        let cryptogram =
            devices.in_app(person, &card.device_id, &card.token_id, &order.terminal)?;
        if cryptogram.needs_password && password.is_none() {
            return Ok(AppPaid::NeedsPassword);
        }
        let paid = gateway
            .pay_with_device(
                &order.tn,
                &DevicePayment {
                    token: &cryptogram.token,
                    expiry: cryptogram.expiry,
                    field55: &cryptogram.field55,
                    password: password.as_ref(),
                    kind: if card.credit {
                        CardKind::Credit
                    } else {
                        CardKind::Debit
                    },
                    charge: order.charge,
                },
            )
            .await?;
        Ok(AppPaid::Done(paid))
    }
}
