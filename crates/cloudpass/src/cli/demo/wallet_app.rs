//! The story's app steps: a person signs up in the Cloud QuickPass app, binds the card with
//! the bank's code and puts it onto the app itself (HCE); with the app installed on the phone
//! the demo institution's Cloud QuickPass button runs control pay, and logged out, the
//! cashier. Each synchronous result is verified by the shop's server, each payment by the
//! shop's query and the bank's ledger.

use reqwest::StatusCode;

use super::shop::{Visitor, attribute, buy_with_quickpass, expect, pay_on_hosted_page, shop_order};
use super::{CARD_PHONE, DEBIT, Demo, StepResult};

const PHONE: &str = "13900000901";
const PASSWORD: &str = "quick pass 2026";

/// The CSRF token the app's forms carry (its cookie).
fn csrf(visitor: &Visitor) -> String {
    visitor.cookie("cp_wallet_csrf").unwrap_or_default()
}

pub(crate) async fn sign_up_and_add_the_card_to_the_app(demo: &mut Demo) -> StepResult {
    let mut visitor = Visitor::new(&demo.base)?;
    visitor.get("/wallet/signup").await?;
    let token = csrf(&visitor);
    let signed_up = visitor
        .post(
            "/wallet/signup",
            &[
                ("csrf", &token),
                ("phone", PHONE),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ],
        )
        .await?;
    expect(&signed_up, StatusCode::SEE_OTHER, "signing up")?;
    let step = visitor
        .post(
            "/wallet/cards",
            &[("csrf", &token), ("card_number", DEBIT), ("expiry", "2912")],
        )
        .await?;
    expect(&step, StatusCode::OK, "binding the card")?;
    let binding = attribute(&step.html, "name=\"binding\"", "value").ok_or("no code step")?;
    let code = super::network::latest_code(demo, CARD_PHONE).await?;
    let bound = visitor
        .post(
            "/wallet/cards/confirm",
            &[("csrf", &token), ("binding", &binding), ("code", &code)],
        )
        .await?;
    expect(&bound, StatusCode::SEE_OTHER, "the bank's code")?;
    let added = visitor
        .post("/wallet/devices", &[("csrf", &token), ("choice", "app")])
        .await?;
    expect(&added, StatusCode::SEE_OTHER, "adding the app as a device")?;
    let devices = visitor.get("/wallet/devices").await?;
    let device = attribute(&devices.html, "id=\"device-1\"", "data-device").ok_or("no device")?;
    let card = attribute(&devices.html, "name=\"card\"", "value").ok_or("no card to add")?;
    let onto = visitor
        .post(
            "/wallet/devices/cards",
            &[("csrf", &token), ("device", &device), ("card", &card)],
        )
        .await?;
    expect(
        &onto,
        StatusCode::SEE_OTHER,
        "putting the card onto the app",
    )?;
    let installed = visitor.post("/phone/app", &[("installed", "1")]).await?;
    expect(
        &installed,
        StatusCode::SEE_OTHER,
        "installing the app on the phone",
    )?;
    demo.app_user = Some(visitor);
    Ok("a person signs up in the app, binds card …0048 with the code its bank texts, adds the app itself as an HCE device and puts the card onto it, and installs the app on the phone simulator".into())
}

/// `CloudPass.startPay` for `tn`: cloudpass's page, then where its route sends the payer.
async fn start_pay(visitor: &mut Visitor, tn: &str, return_url: &str) -> Result<String, String> {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("tn", tn), ("mode", "01"), ("return", return_url)])
        .finish();
    let start = visitor.get(&format!("/sdk/start?{query}")).await?;
    let next =
        attribute(&start.html, "id=\"continue\"", "href").ok_or("no way on from /sdk/start")?;
    visitor
        .get(&next)
        .await?
        .location
        .ok_or_else(|| "/sdk/route sent the payer nowhere".into())
}

/// Hands the synchronous result in `link`'s fragment to the shop's server, as the shop's page
/// script does; what the shop verified.
async fn report_result(
    visitor: &mut Visitor,
    order_id: &str,
    link: &str,
) -> Result<String, String> {
    let fragment = link
        .split_once('#')
        .map(|(_, f)| f)
        .ok_or("no result in the way back")?;
    let fields: Vec<(String, String)> = form_urlencoded::parse(fragment.as_bytes())
        .into_owned()
        .collect();
    let result_data = fields
        .iter()
        .find(|(k, _)| k == "result_data")
        .map(|(_, v)| v.clone())
        .ok_or("the app's result carries no result_data")?;
    let answer = visitor
        .post(
            &format!("/demo-merchant/orders/{order_id}/app-result"),
            &[("result_data", &result_data)],
        )
        .await?;
    let verified: serde_json::Value =
        serde_json::from_str(&answer.html).map_err(|e| e.to_string())?;
    if verified["verified"] != true {
        return Err("the shop could not verify the app's result_data".into());
    }
    Ok(verified["pay_result"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// The notebook: 58.00, over the sandbox campaign's 50.00.
const NOTEBOOK_FEN: i64 = 5_800;
/// The sandbox campaign's discount on app payments of 50.00 or more.
const CAMPAIGN_OFF_FEN: i64 = 500;

/// Pays a notebook by Cloud QuickPass, in the app (`by_card` false: the campaign's discount
/// comes off) or by card number in the cashier (none does), from where the SDK sent the
/// payer; checks the synchronous result, the shop's query (the whole 58.00 settled, the
/// discount in `couponInfo` or none) and the ledger (what the card was charged).
async fn checkout(demo: &mut Demo, expect_route: &str, by_card: bool) -> Result<String, String> {
    let mut visitor = demo.app_user.take().ok_or("no app user")?;
    let outcome = checkout_with(demo, &mut visitor, expect_route, by_card).await;
    demo.app_user = Some(visitor);
    outcome
}

async fn checkout_with(
    demo: &Demo,
    visitor: &mut Visitor,
    expect_route: &str,
    by_card: bool,
) -> Result<String, String> {
    let before = demo.balance(DEBIT).await?;
    let (order_id, tn) = buy_with_quickpass(visitor, "notebook").await?;
    let return_url = format!("{}/demo-merchant/orders/{order_id}", demo.base);
    let routed = start_pay(visitor, &tn, &return_url).await?;
    if !routed.starts_with(expect_route) {
        return Err(format!(
            "expected the SDK to choose {expect_route}, it chose {routed}"
        ));
    }
    let back = if by_card {
        let cashier = visitor.get(&routed).await?;
        let hosted = attribute(&cashier.html, "id=\"by-card\"", "href")
            .ok_or("the cashier offers no card payment")?;
        if !hosted.contains("sdk_flow=cashier") {
            return Err(format!(
                "the cashier's card payment should be the hosted page: {hosted}"
            ));
        }
        let paid = pay_on_hosted_page(visitor, &tn, "cashier", &return_url).await?;
        attribute(&paid, "id=\"return\"", "href").ok_or("no way back from the hosted page")?
    } else {
        let screen = visitor.get(&routed).await?;
        if attribute(&screen.html, "id=\"discount\"", "class").is_none() {
            return Err("the app's confirm screen shows no discount on a 58.00 order".into());
        }
        let token = attribute(&screen.html, "name=\"token\"", "value")
            .or_else(|| attribute(&screen.html, "<option", "value"))
            .ok_or("the app offers no card to pay with")?;
        // The charge the screen showed is what the person confirms.
        let charge = attribute(&screen.html, "name=\"charge\"", "value")
            .ok_or("the app's confirm screen names no charge")?;
        if charge != (NOTEBOOK_FEN - CAMPAIGN_OFF_FEN).to_string() {
            return Err(format!("the app should charge 53.00, shows {charge} fen"));
        }
        let csrf = csrf(visitor);
        let paid = visitor
            .post(
                "/wallet/pay",
                &[
                    ("csrf", &csrf),
                    ("tn", &tn),
                    ("token", &token),
                    ("charge", &charge),
                    ("return", &return_url),
                ],
            )
            .await?;
        let status = attribute(&paid.html, "id=\"result\"", "data-status").unwrap_or_default();
        if status != "paid" {
            return Err(format!("the app's payment should be paid, is {status:?}"));
        }
        let done =
            attribute(&paid.html, "id=\"return\"", "href").ok_or("no way back to the shop")?;
        visitor
            .get(&done)
            .await?
            .location
            .ok_or("/sdk/return sent the payer nowhere")?
    };
    let result = report_result(visitor, &order_id, &back).await?;
    if result != "success" {
        return Err(format!(
            "the synchronous result should be success, is {result}"
        ));
    }
    let (state, _) = shop_order(visitor, &order_id).await?;
    if state != "paid" {
        return Err(format!("the shop's query should say paid, says {state}"));
    }
    let page = visitor
        .get(&format!("/demo-merchant/orders/{order_id}"))
        .await?;
    let coupon = attribute(&page.html, "id=\"coupon\"", "data-offset");
    let (expect_coupon, charged) = if by_card {
        (None, NOTEBOOK_FEN)
    } else {
        (
            Some(CAMPAIGN_OFF_FEN.to_string()),
            NOTEBOOK_FEN - CAMPAIGN_OFF_FEN,
        )
    };
    if coupon != expect_coupon {
        return Err(format!(
            "the shop's query should carry couponInfo {expect_coupon:?}, carries {coupon:?}"
        ));
    }
    let settled = attribute(&page.html, "id=\"settled\"", "data-fen");
    if settled.as_deref() != Some("5800") {
        return Err("the shop's query should say 58.00 is settled to it".into());
    }
    if before - demo.balance(DEBIT).await? != charged {
        return Err(format!(
            "the bank's ledger should have moved {charged} fen, moved {}",
            before - demo.balance(DEBIT).await?
        ));
    }
    Ok(tn)
}

pub(crate) async fn control_pay(demo: &mut Demo) -> StepResult {
    let tn = checkout(demo, "/wallet/pay?", false).await?;
    Ok(format!(
        "app installed and logged in: the SDK opens the app's confirm screen (control pay) for TN …{}, a 58.00 notebook with UnionPay's campaign taking 5.00 off; paid with the app's own device card; the signed result `success` verified by the shop's server, its query says paid with couponInfo 5.00 and 58.00 settled to the shop, 53.00 left the card",
        &tn[tn.len() - 4..]
    ))
}

pub(crate) async fn cashier(demo: &mut Demo) -> StepResult {
    let mut visitor = demo.app_user.take().ok_or("no app user")?;
    let token = csrf(&visitor);
    let out = visitor.post("/wallet/logout", &[("csrf", &token)]).await;
    demo.app_user = Some(visitor);
    expect(&out?, StatusCode::SEE_OTHER, "logging out")?;
    let tn = checkout(demo, "/wallet/cashier?", true).await?;
    Ok(format!(
        "app installed, logged out: the SDK opens the cashier for TN …{}; paid by card number on the hosted page, so no discount; the signed result `success` verified by the shop's server, its query says paid, 58.00 left the card",
        &tn[tn.len() - 4..]
    ))
}
