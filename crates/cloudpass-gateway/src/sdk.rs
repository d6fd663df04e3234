//! What the payment SDK (`/sdk/cloudpass.js`, served by the wallet) needs of the gateway: the
//! order a TN names with the merchant's SDK-WAP permission, the synchronous result the app
//! hands back (`result_data`, signed here, read from the order's state so it can never say
//! more than the order book does), and the return to the institution's page from the hosted
//! page when the SDK sent the payer there — the cashier's card payment or WAP pay.
//!
//! The return address is the institution's page (`return`): an absolute `http`/`https`
//! address without a fragment, to which the result is appended as a fragment
//! (`#pay_result=…&result_data=…`), so it never reaches a server's logs.

use cloudpass_core::order::OrderStatus;
use cloudpass_core::{Currency, Money};
use cloudpass_store::{GatewayStore, OrderRow};
use cloudpass_upacp::app_result::{PayResult, ResultData};

use crate::Gateway;
use crate::pay::{PayError, unavailable};

/// The form fields (and query parameters) that carry an SDK visit through the hosted page.
pub const FLOW_FIELD: &str = "sdk_flow";
pub const RETURN_FIELD: &str = "sdk_return";
/// Return addresses longer than this are refused: a page address, not a payload.
pub const MAX_RETURN_URL: usize = 1024;

/// Which of the SDK's flows sent the payer to the hosted page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkFlow {
    /// The app's cashier (收银台), paying by card number: its result is synchronous.
    Cashier,
    /// WAP pay inside the institution's page: its result is asynchronous.
    Wap,
}

impl SdkFlow {
    pub fn as_str(self) -> &'static str {
        match self {
            SdkFlow::Cashier => "cashier",
            SdkFlow::Wap => "wap",
        }
    }

    pub fn parse(text: &str) -> Option<SdkFlow> {
        match text {
            "cashier" => Some(SdkFlow::Cashier),
            "wap" => Some(SdkFlow::Wap),
            _ => None,
        }
    }
}

/// A hosted-page visit that came from the SDK: its flow and where the payer goes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkVisit {
    pub flow: SdkFlow,
    pub return_url: String,
}

impl SdkVisit {
    /// The visit the two fields describe; `None` when either is missing or not valid.
    pub fn read(flow: Option<&str>, return_url: Option<&str>) -> Option<SdkVisit> {
        let flow = SdkFlow::parse(flow?)?;
        let return_url = return_url?;
        return_url_is_valid(return_url).then(|| SdkVisit {
            flow,
            return_url: return_url.to_owned(),
        })
    }

    /// `?sdk_flow=…&sdk_return=…`, to append to a hosted-page address.
    pub fn query(&self) -> String {
        format!(
            "?{FLOW_FIELD}={}&{RETURN_FIELD}={}",
            self.flow.as_str(),
            encode(&self.return_url)
        )
    }
}

/// Whether `url` may be the institution's return page: absolute `http` or `https`, with a
/// host, no fragment, no spaces or control characters, and not too long.
pub fn return_url_is_valid(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.and_then(|rest| rest.split(['/', '?']).next());
    url.len() <= MAX_RETURN_URL
        && host.is_some_and(|host| !host.is_empty() && !host.contains('@'))
        && !url.contains('#')
        && url.chars().all(|c| c.is_ascii_graphic())
}

/// The institution's page with the result as its fragment.
pub fn return_link(return_url: &str, pay_result: &str, result_data: Option<&ResultData>) -> String {
    let mut link = format!("{return_url}#pay_result={pay_result}");
    if let Some(data) = result_data {
        link.push_str("&result_data=");
        link.push_str(&encode(&data.to_json()));
    }
    link
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A payable order as the SDK's routing sees it.
#[derive(Debug, Clone)]
pub struct SdkOrder {
    pub tn: String,
    pub mer_id: String,
    pub merchant_name: String,
    pub order_id: String,
    pub amount: Money,
    /// The merchant may take WAP pay started by the SDK.
    pub sdk_wap: bool,
}

/// What the app tells the institution's page of a payment.
#[derive(Debug, Clone)]
pub enum SdkOutcome {
    /// Paid, declined or given up (`cancel`: the order is still unpaid), signed.
    Known(PayResult, ResultData),
    /// The bank has not answered: the notification or a query will say.
    Unknown,
}

impl SdkOutcome {
    pub fn return_link(&self, return_url: &str) -> String {
        match self {
            SdkOutcome::Known(result, data) => return_link(return_url, result.as_str(), Some(data)),
            SdkOutcome::Unknown => return_link(return_url, "unknown", None),
        }
    }
}

impl Gateway {
    /// The payable order `tn`, with what its merchant may do.
    pub async fn sdk_order(&self, tn: &str) -> Result<SdkOrder, PayError> {
        let order = self.payable_order(tn).await?;
        let merchant = self.merchant(&order.mer_id).await.map_err(unavailable)?;
        Ok(SdkOrder {
            merchant_name: merchant
                .as_ref()
                .map_or_else(|| order.mer_id.clone(), |m| m.name.clone()),
            sdk_wap: merchant.is_some_and(|m| m.permissions.sdk_wap),
            amount: Money::new(u64::try_from(order.amount).unwrap_or(0), Currency::CNY),
            tn: order.tn,
            mer_id: order.mer_id,
            order_id: order.order_id,
        })
    }

    /// The synchronous result of `tn` as its order now stands: paid (or since refunded) is
    /// `success`; declined or closed is `fail`; still unpaid is `cancel`; being paid is
    /// unknown.
    pub async fn sdk_outcome(&self, tn: &str) -> Result<SdkOutcome, PayError> {
        let order = self
            .store
            .order_by_tn(tn)
            .await
            .map_err(unavailable)?
            .filter(|order| order.kind == "consume")
            .ok_or(PayError::UnknownTn)?;
        Ok(self.outcome_of(&order))
    }

    pub(crate) fn outcome_of(&self, order: &OrderRow) -> SdkOutcome {
        let result = match OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Failed) {
            OrderStatus::Paid
            | OrderStatus::PartlyRefunded
            | OrderStatus::Refunded
            | OrderStatus::Undoing
            | OrderStatus::Undone => PayResult::Success,
            OrderStatus::Failed | OrderStatus::Closed => PayResult::Fail,
            OrderStatus::Issued if self.payable(order) => PayResult::Cancel,
            OrderStatus::Issued => PayResult::Fail,
            OrderStatus::Paying => return SdkOutcome::Unknown,
        };
        match ResultData::sign(
            result,
            &order.tn,
            &self.signer.key,
            &self.signer.certificate,
        ) {
            Ok(data) => SdkOutcome::Known(result, data),
            Err(error) => {
                tracing::error!(error = %error, "gateway: an app result could not be signed");
                SdkOutcome::Unknown
            }
        }
    }

    /// Where the hosted page sends the payer back to the institution after an SDK visit:
    /// the cashier's result is synchronous and signed; WAP pay's is not told (the
    /// notification and the query tell the institution), except that the payer gave up.
    pub(crate) fn sdk_return(&self, order: &OrderRow, visit: &SdkVisit) -> String {
        match visit.flow {
            SdkFlow::Cashier => self.outcome_of(order).return_link(&visit.return_url),
            SdkFlow::Wap if self.payable(order) => {
                return_link(&visit.return_url, PayResult::Cancel.as_str(), None)
            }
            SdkFlow::Wap => return_link(&visit.return_url, "unknown", None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_pages_are_absolute_web_addresses_without_a_fragment() {
        for good in [
            "https://shop.example/pay/return",
            "http://127.0.0.1:8080/demo-merchant/orders/A1?x=1",
        ] {
            assert!(return_url_is_valid(good), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "/relative",
            "https://",
            "https://shop.example/#frag",
            "https://user@evil.example/",
            "https://shop.example/a b",
            "ftp://shop.example/",
        ] {
            assert!(!return_url_is_valid(bad), "{bad}");
        }
        assert!(!return_url_is_valid(&format!(
            "https://shop.example/{}",
            "a".repeat(MAX_RETURN_URL)
        )));
    }

    #[test]
    fn the_result_rides_in_the_fragment() {
        let data = ResultData {
            sign: "c2ln+/=".into(),
            data: "pay_result=success&tn=1&cert_id=2".into(),
        };
        let link = return_link("https://shop.example/r?o=1", "success", Some(&data));
        let (page, fragment) = link.split_once('#').unwrap();
        assert_eq!(page, "https://shop.example/r?o=1");
        let fields: Vec<(String, String)> = form_urlencoded::parse(fragment.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(fields[0], ("pay_result".into(), "success".into()));
        assert_eq!(
            ResultData::from_json(&fields[1].1).unwrap(),
            data,
            "result_data survives the fragment's encoding"
        );
        assert_eq!(
            SdkVisit::read(Some("wap"), Some("https://shop.example/r"))
                .unwrap()
                .query(),
            "?sdk_flow=wap&sdk_return=https%3A%2F%2Fshop.example%2Fr"
        );
        assert_eq!(SdkVisit::read(Some("wap"), Some("javascript:x")), None);
        assert_eq!(SdkVisit::read(Some("control"), Some("https://a.b/")), None);
    }
}
