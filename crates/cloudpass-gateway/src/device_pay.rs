//! Paying a TN with a device card inside the Cloud QuickPass app (控件支付's payment): the
//! app's device card makes an in-app cryptogram over the terminal data the gateway gives for
//! the order, with the payment password when the card's online no-PIN limit asks for it; the
//! gateway, as the e-commerce acquirer, sends it to the switch as an in-app purchase (the
//! switch maps the token, checks the cryptogram and the token's in-app domain, and the bank
//! the password). The order moves as a card payment does (`pay`): marked paying before it
//! leaves, settled by the answer, announced to the merchant when paid. A campaign's
//! discount (`discount`) lowers what the card is charged — the amount the cryptogram covers
//! and the no-PIN limit is measured against — never what the merchant is paid.

use cloudpass_acquirer::{AcquirerError, Presentment, Purchase};
use cloudpass_core::card_number::mask_digits;
use cloudpass_core::order::OrderEvent;
use cloudpass_core::{AccountNumber, Currency, Expiry, Money, Token};
use cloudpass_crypto::Pin;
use cloudpass_iso8583::emv_data::TerminalData;

use crate::Gateway;
use crate::discount::Discount;
use crate::pay::{CardKind, PaidWith, PayError, PayResult, Sending};

/// An order as the app's payment screen shows it, with the terminal data its cryptogram
/// must cover.
#[derive(Debug, Clone)]
pub struct DeviceOrder {
    pub tn: String,
    pub mer_id: String,
    /// The merchant's name as registered (its `merId` when it has none).
    pub merchant_name: String,
    pub order_id: String,
    /// The order's amount: what the merchant is paid.
    pub amount: Money,
    /// The campaign's discount, if one applies now.
    pub discount: Option<Discount>,
    /// What the card is charged: the amount less the discount.
    pub charge: Money,
    /// Over [`DeviceOrder::charge`].
    pub terminal: TerminalData,
}

/// A device card's payment of one TN.
pub struct DevicePayment<'a> {
    pub token: &'a Token,
    pub expiry: Expiry,
    /// Field 55: the device's in-app cryptogram over [`DeviceOrder::terminal`].
    pub field55: &'a [u8],
    /// The payment password, when the device asked for it.
    pub password: Option<&'a Pin>,
    pub kind: CardKind,
    /// What the person confirmed the card is charged ([`DeviceOrder::charge`]).
    pub charge: Money,
}

impl Gateway {
    /// The payable order `tn`, the discount it would get now, and fresh terminal data (the
    /// charge, the merchant's date, a new unpredictable number) for a device's in-app
    /// cryptogram.
    pub async fn device_order(&self, tn: &str) -> Result<DeviceOrder, PayError> {
        let order = self.payable_order(tn).await?;
        let amount = Money::new(u64::try_from(order.amount).unwrap_or(0), Currency::CNY);
        let discount = self.discount_for(amount.minor_units()).await?;
        let offset = discount.as_ref().map_or(0, |d| d.offset.minor_units());
        let charge = Money::new(amount.minor_units() - offset, Currency::CNY);
        let days = self
            .merchant_now_millis(&order.mer_id)
            .div_euclid(86_400_000);
        let (year, month, day) = cloudpass_core::clock::civil_from_days(days);
        let bcd = |n: i64| {
            let n = u8::try_from(n.rem_euclid(100)).unwrap_or(0);
            ((n / 10) << 4) | (n % 10)
        };
        let mut unpredictable_number = [0u8; 4];
        self.random.fill(&mut unpredictable_number);
        let merchant_name = match self.merchant(&order.mer_id).await {
            Ok(Some(merchant)) => merchant.name.clone(),
            _ => order.mer_id.clone(),
        };
        Ok(DeviceOrder {
            merchant_name,
            tn: order.tn,
            mer_id: order.mer_id,
            order_id: order.order_id,
            amount,
            discount,
            charge,
            terminal: TerminalData {
                amount: charge.minor_units(),
                other_amount: 0,
                country: 156,
                currency: Currency::CNY.numeric(),
                tvr: [0; 5],
                date: [bcd(year), bcd(i64::from(month)), bcd(i64::from(day))],
                transaction_type: 0,
                unpredictable_number,
            },
        })
    }

    /// Pays the order `tn` with a device card's in-app cryptogram. The discount is decided
    /// again, one payment at a time, and recorded with the order's move to paying: when it
    /// is no longer the one the person confirmed, nothing is sent.
    pub async fn pay_with_device(
        &self,
        tn: &str,
        payment: &DevicePayment<'_>,
    ) -> Result<PayResult, PayError> {
        let terminal = self
            .acquirer
            .get()
            .cloned()
            .ok_or(PayError::NetworkNotReady)?;
        let deciding = self.campaign_lock.lock().await;
        let order = self.payable_order(tn).await?;
        let amount = u64::try_from(order.amount).unwrap_or(0);
        let discount = self.discount_for(amount).await?;
        let offset = discount.as_ref().map_or(0, |d| d.offset.minor_units());
        if amount - offset != payment.charge.minor_units() {
            return Err(PayError::DiscountChanged);
        }
        let prepared = terminal
            .prepare_purchase(&Purchase {
                account: payment.token,
                expiry: Some(payment.expiry),
                amount: payment.charge,
                field55: payment.field55,
                presentment: Presentment::InApp,
                pin: payment.password,
            })
            .map_err(|error| {
                tracing::warn!(error = %error, tn = %order.tn, "gateway: the in-app authorization could not be built");
                PayError::NetworkNotReady
            })?;
        let (stan, time) = (
            prepared.stan().to_owned(),
            prepared.transmission_time().to_owned(),
        );
        let paying = self
            .record(order, OrderEvent::PaymentSent, |row| {
                row.auth_stan = Some(stan);
                row.auth_transmission_time = Some(time);
                row.discount = i64::try_from(offset).unwrap_or(0);
                row.campaign_id = discount.map(|d| d.campaign_id.to_owned());
            })
            .await?;
        // Recorded: the budget counts this payment from now on.
        drop(deciding);
        let sent = match terminal.send_prepared(prepared).await {
            Ok(outcome) => Sending::Answered(outcome),
            Err(AcquirerError::Link(error)) => {
                tracing::warn!(error = %error, tn = %paying.tn, "gateway: the in-app authorization's fate is unknown");
                Sending::Unknown
            }
            Err(error) => {
                tracing::warn!(error = %error, tn = %paying.tn, "gateway: the in-app authorization could not be sent");
                Sending::NeverLeft
            }
        };
        let paid_with = PaidWith {
            masked: mask_digits(payment.token.expose()),
            kind: payment.kind,
        };
        self.settle(paying, &paid_with, sent).await
    }
}
