//! The Cloud QuickPass app as a person uses it in a browser: the steps many page tests share.

use super::app::TestApp;
use super::browser::{self, Browser};

pub const PASSWORD: &str = "quick pass 2026";
pub const CMB_DEBIT: &str = "6226090000000048";
/// The phone the sandbox bank texts the published test cards' codes to.
pub const CARD_PHONE: &str = "18100000000";

/// Signs up `phone` (English pages) and binds the sandbox's CMB debit card.
pub async fn sign_up_with_a_card(
    app: &TestApp,
    chromium: &Browser,
    phone: &str,
) -> chromiumoxide::Page {
    let page = chromium
        .open(&format!("{}/wallet/signup?lang=en", app.base))
        .await;
    browser::wait_for(&page, "#password_again").await;
    browser::fill(&page, "#phone", phone).await;
    browser::fill(&page, "#password", PASSWORD).await;
    browser::fill(&page, "#password_again", PASSWORD).await;
    browser::click_to(&page, "#submit", "#bind").await;
    browser::click_to(&page, "#bind", "#card_number").await;
    browser::fill(&page, "#card_number", CMB_DEBIT).await;
    browser::fill(&page, "#expiry", "2912").await;
    browser::click_to(&page, "#next", "#code").await;
    let code = app.latest_otp(CARD_PHONE).await;
    browser::fill(&page, "#code", &code).await;
    browser::click_to(&page, "#confirm", "#notice").await;
    page
}
