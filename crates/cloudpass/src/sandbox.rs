//! The sandbox seeded on first start: one issuer bank holding UnionPay's published test cards
//! (reference/upacp.md §5), one token requestor per wallet brand, a wallet account, and
//! webhook receivers for all of them. The API keys and secrets here are sandbox fixtures,
//! documented in docs/tsp-api.md; they must never guard real data.

use cloudpass_crypto::KeyHandle;
use cloudpass_sim::issuer_host::SimCard;
use cloudpass_store::{BinRangeRow, IssuerRow, ProductRow, TokenRequestorRow, TokenStore, UserRow};
use cloudpass_switch::Switch;
use cloudpass_switch::participants::{Acquirer, Merchant};
use cloudpass_tsp::Tsp;
use cloudpass_tsp::http::api_key_hash;

pub const ISSUER_ID: &str = "iss_sandbox";
pub const ISSUER_NAME: &str = "Cloudpass Sandbox Bank";
pub const ISSUER_API_KEY: &str = "sk_sandbox_issuer";
pub const ISSUER_SECRET: &str = "whsec_sandbox_issuer";
/// The sandbox acquirer, its merchant and its terminals (all sharing the sandbox terminal
/// master key).
pub const ACQUIRER_ID: &str = "48020000";
pub const MERCHANT_ID: &str = "898310048990001";
pub const MERCHANT_NAME: &str = "cloudpass sandbox store  Shanghai    CHN";
/// A supermarket: eligible for contactless payments without PIN.
pub const MERCHANT_CATEGORY: &str = "5411";
pub const TERMINALS: &[&str] = &[
    "CPPOS001", "CPPOS002", "CPPOS003", "CPPOS004", "CPPOS005", "CPPOS006", "CPPOS007", "CPPOS008",
    "CPPOS009", "CPPOS010", "CPPOS011", "CPPOS012", "CPPOS013", "CPPOS014", "CPPOS015", "CPPOS016",
];
/// The terminal of the phone simulator's POS (`/phone`), kept apart from [`TERMINALS`] so
/// that a bench or `cloudpass pos` signing on never changes its keys under a tap.
pub const PHONE_SIMULATOR_TERMINAL: &str = "CPPHN001";
/// A second sandbox acquirer whose terminals need not MAC their messages: for plain interop
/// clients (the pyiso8583 test) that cannot compute a MAC. The switch logs a warning about it
/// at every start. Its merchant and terminals share the sandbox terminal master key too.
pub const PLAIN_ACQUIRER_ID: &str = "48021000";
pub const PLAIN_MERCHANT_ID: &str = "898310048990002";
pub const PLAIN_TERMINALS: &[&str] = &["CPPLN001", "CPPLN002", "CPPLN003", "CPPLN004"];
/// The sandbox's e-commerce acquirer: the one allowed to send card-not-present payments (a
/// card number typed by its holder). The institution gateway acquires through it.
pub const ECOMMERCE_ACQUIRER_ID: &str = "48022000";
pub const ECOMMERCE_MERCHANT_ID: &str = "898310048990003";
pub const ECOMMERCE_TERMINALS: &[&str] = &[
    "CPWEB001",
    "CPWEB002",
    "CPWEB003",
    "CPWEB004",
    GATEWAY_TERMINAL,
];
/// The terminal the institution gateway acquires through.
pub const GATEWAY_TERMINAL: &str = "CPGWY001";

/// Registers the sandbox's acquirers, merchants and terminals with the switch.
pub fn register_participants(switch: &Switch, terminal_master: KeyHandle) -> Result<(), String> {
    let acquirers = [
        (
            ACQUIRER_ID,
            "cloudpass sandbox acquirer",
            true,
            false,
            MERCHANT_ID,
            TERMINALS,
        ),
        (
            PLAIN_ACQUIRER_ID,
            "cloudpass sandbox acquirer for plain (un-MACed) interop clients",
            false,
            false,
            PLAIN_MERCHANT_ID,
            PLAIN_TERMINALS,
        ),
        (
            ECOMMERCE_ACQUIRER_ID,
            "cloudpass sandbox e-commerce acquirer",
            true,
            true,
            ECOMMERCE_MERCHANT_ID,
            ECOMMERCE_TERMINALS,
        ),
    ];
    for (acquirer_id, name, mac_required, card_not_present, merchant_id, terminals) in acquirers {
        switch
            .register_acquirer(Acquirer {
                id: acquirer_id.into(),
                name: name.into(),
                mac_required,
                card_not_present,
            })
            .and_then(|()| {
                switch.register_merchant(Merchant {
                    id: merchant_id.into(),
                    acquirer_id: acquirer_id.into(),
                })
            })
            .map_err(|e| format!("sandbox acquirer {acquirer_id}: {e}"))?;
        for terminal in terminals {
            switch
                .register_terminal(acquirer_id, merchant_id, terminal, terminal_master)
                .map_err(|e| format!("sandbox terminal {terminal}: {e}"))?;
        }
    }
    switch
        .register_terminal(
            ACQUIRER_ID,
            MERCHANT_ID,
            PHONE_SIMULATOR_TERMINAL,
            terminal_master,
        )
        .map_err(|e| format!("sandbox terminal {PHONE_SIMULATOR_TERMINAL}: {e}"))?;
    Ok(())
}

/// The sandbox's marketing campaign: 5.00 off app payments of 50.00 or more (control pay,
/// and the cashier after logging in), paid for by UnionPay, 10,000.00 in all. Payments by
/// card number get none; the merchant is paid the whole amount either way.
pub const CAMPAIGNS: [cloudpass_core::discount::Campaign; 1] =
    [cloudpass_core::discount::Campaign {
        id: "CQP202612001",
        kind: "CP01",
        sponsor: cloudpass_core::discount::UNIONPAY_SPONSOR,
        name_zh: "云闪付满50减5",
        name_en: "Cloud QuickPass 5.00 off 50.00",
        threshold: 5_000,
        offset: 500,
        budget: 1_000_000,
    }];

/// The card `cloudpass pos` puts on a new phone: 招商借记, green, PIN 111101.
pub const DEFAULT_PHONE_CARD: &str = "6226090000000048";
/// 华夏贷记: its bank wants an SMS code before it goes onto a device (yellow); CVN2 248.
pub const STEP_UP_CARD: &str = "6226388000000095";
/// 平安借记: green, PIN 123456 as published.
pub const PINGAN_DEBIT_CARD: &str = "6216261000000000018";
/// 农行贷记: green, CVN2 123; no PIN is published (the sandbox's is 111111).
pub const ABC_CREDIT_CARD: &str = "5200831111111113";

/// The wallet account seeded with every token requestor.
pub const ACCOUNT_ID: &str = "alice";

/// A wallet brand: token requestor ID, name, wallet code, API key, webhook secret.
pub struct Wallet {
    pub id: &'static str,
    pub name: &'static str,
    pub wallet: &'static str,
    pub api_key: &'static str,
    pub secret: &'static str,
}

/// The Cloud QuickPass app's token requestor ID and webhook secret (the last of
/// [`WALLETS`]): its notifications go to the app itself, `/wallet/tsp/notifications`.
pub const QUICKPASS_TOKEN_REQUESTOR: &str = "40010030315";
pub const QUICKPASS_WEBHOOK_SECRET: &str = "whsec_sandbox_quickpass";

pub const WALLETS: &[Wallet] = &[
    Wallet {
        id: "40010030273",
        name: "Apple Pay",
        wallet: "apple",
        api_key: "sk_sandbox_apple_pay",
        secret: "whsec_sandbox_apple_pay",
    },
    Wallet {
        id: "40010030281",
        name: "Huawei Pay",
        wallet: "huawei",
        api_key: "sk_sandbox_huawei_pay",
        secret: "whsec_sandbox_huawei_pay",
    },
    Wallet {
        id: "40010030299",
        name: "Mi Pay",
        wallet: "xiaomi",
        api_key: "sk_sandbox_mi_pay",
        secret: "whsec_sandbox_mi_pay",
    },
    Wallet {
        id: "40010030307",
        name: "Samsung Pay",
        wallet: "samsung",
        api_key: "sk_sandbox_samsung_pay",
        secret: "whsec_sandbox_samsung_pay",
    },
    Wallet {
        id: QUICKPASS_TOKEN_REQUESTOR,
        name: "Cloud QuickPass",
        wallet: "quickpass",
        api_key: "sk_sandbox_quickpass",
        secret: QUICKPASS_WEBHOOK_SECRET,
    },
];

/// Card BIN ranges of the sandbox bank: prefix, product (= funding).
pub const CARD_BINS: &[(&str, &str)] = &[
    ("622609", "debit"),
    ("621626", "debit"),
    ("622638", "credit"),
    ("622155", "credit"),
    ("520083", "credit"),
];
/// Token BIN ranges: device cards are numbered from these.
const TOKEN_BINS: &[(&str, &str)] = &[("623118", "debit"), ("623128", "credit")];

/// Trigger cards: cards of the sandbox bank (not UnionPay's) that make the issuer decline on
/// demand, so an integrator can reach every failure case (docs/upacp.md §0).
pub const INSUFFICIENT_FUNDS_CARD: &str = "6226090000000113";
pub const EXPIRED_CARD: &str = "6226388000000103";
/// Trigger: a debit card whose payments the sandbox holds [`PENDING_SECONDS`] before sending,
/// so the trade is seen pending (UPACP 05) and then paid.
pub const PENDING_CARD: &str = "6226090000000121";
/// How long a payment with [`PENDING_CARD`] is held, on the merchant's clock.
pub const PENDING_SECONDS: i64 = 30;

/// UnionPay's published test cards. Where the published expiry has passed (1225, 1125) the
/// sandbox card expires in 2029 instead, so the cards stay usable; 6221558812340000 is left
/// out because it fails the Luhn check every card number here must pass. Then the trigger
/// cards.
pub fn cards() -> Vec<SimCard> {
    struct Card {
        number: &'static str,
        expiry: &'static str,
        cvn2: Option<&'static str>,
        phone: &'static str,
        holder: &'static str,
        funding: &'static str,
        provisioning: &'static str,
        pin: &'static str,
        /// Opening balance (debit) or credit limit (credit), in fen.
        money: i64,
    }
    let cards = [
        // 招商借记: PIN 111101 as published.
        Card {
            number: DEFAULT_PHONE_CARD,
            expiry: "2912",
            cvn2: None,
            phone: "18100000000",
            holder: "张三",
            funding: "debit",
            provisioning: "green",
            pin: "111101",
            money: 1_000_000,
        },
        // 华夏贷记: the yellow path (SMS code to 18100000000). No PIN is published: 111111.
        Card {
            number: STEP_UP_CARD,
            expiry: "2912",
            cvn2: Some("248"),
            phone: "18100000000",
            holder: "张三",
            funding: "credit",
            provisioning: "yellow",
            pin: "111111",
            money: 5_000_000,
        },
        // 平安借记: PIN 123456 as published.
        Card {
            number: PINGAN_DEBIT_CARD,
            expiry: "2912",
            cvn2: None,
            phone: "13552535506",
            holder: "全渠道",
            funding: "debit",
            provisioning: "green",
            pin: "123456",
            money: 500_000,
        },
        // 农行贷记. No PIN is published: 111111.
        Card {
            number: ABC_CREDIT_CARD,
            expiry: "2911",
            cvn2: Some("123"),
            phone: "13552535506",
            holder: "互联网",
            funding: "credit",
            provisioning: "green",
            pin: "111111",
            money: 2_000_000,
        },
        // Trigger: a debit card holding 1.00 CNY, so a larger payment is declined 51
        // (UPACP 64, insufficient funds).
        Card {
            number: INSUFFICIENT_FUNDS_CARD,
            expiry: "2912",
            cvn2: None,
            phone: "18100000000",
            holder: "余额不足",
            funding: "debit",
            provisioning: "green",
            pin: "111101",
            money: 100,
        },
        // Trigger: a debit card whose payments stay pending for a while (docs/upacp.md §0).
        Card {
            number: PENDING_CARD,
            expiry: "2912",
            cvn2: None,
            phone: "18100000000",
            holder: "处理中",
            funding: "debit",
            provisioning: "green",
            pin: "111101",
            money: 1_000_000,
        },
        // Trigger: a credit card that expired in January 2020, declined 54 (UPACP 65).
        Card {
            number: EXPIRED_CARD,
            expiry: "2001",
            cvn2: Some("248"),
            phone: "18100000000",
            holder: "已过期",
            funding: "credit",
            provisioning: "green",
            pin: "111111",
            money: 5_000_000,
        },
    ];
    cards
        .into_iter()
        .map(|card| SimCard {
            number: card.number.into(),
            expiry: card.expiry.into(),
            cvn2: card.cvn2.map(Into::into),
            phone: card.phone.into(),
            holder_name: card.holder.into(),
            funding: card.funding.into(),
            product: card.funding.into(),
            provisioning: card.provisioning.into(),
            pin: Some(card.pin.into()),
            currency: 156,
            opening_balance: if card.funding == "debit" {
                card.money
            } else {
                0
            },
            credit_limit: if card.funding == "credit" {
                card.money
            } else {
                0
            },
            // 20,000 CNY a day.
            daily_limit: 2_000_000,
        })
        .collect()
}

/// Seeds the token service's side of the sandbox, once. Returns whether it seeded.
pub async fn seed_tsp(tsp: &Tsp, base_url: &str) -> Result<bool, String> {
    let store = tsp.store();
    let failed = |e: &dyn std::fmt::Display| format!("seeding the sandbox: {e}");
    if store
        .issuer(ISSUER_ID)
        .await
        .map_err(|e| failed(&e))?
        .is_some()
    {
        refresh_urls(tsp, base_url).await?;
        return Ok(false);
    }
    let now = tsp.now();
    let issuer = IssuerRow {
        id: ISSUER_ID.into(),
        name: ISSUER_NAME.into(),
        api_url: format!("{base_url}/sim/issuer/v1"),
        api_key_hash: api_key_hash(ISSUER_API_KEY),
        webhook_url: Some(format!("{base_url}/sandbox/v1/webhooks/{ISSUER_ID}")),
        webhook_secret: Some(
            tsp.seal_secret(ISSUER_ID, ISSUER_SECRET.as_bytes())
                .map_err(|e| failed(&e))?,
        ),
        created_at: now,
    };
    let mut ranges = Vec::new();
    for (kind, list) in [("card", CARD_BINS), ("token", TOKEN_BINS)] {
        for (prefix, product) in list {
            ranges.push(BinRangeRow {
                prefix: (*prefix).into(),
                kind: kind.into(),
                issuer_id: ISSUER_ID.into(),
                product: (*product).into(),
                funding: (*product).into(),
            });
        }
    }
    let products = [("debit", 100_000, 50_000), ("credit", 100_000, 200_000)].map(
        |(product, contactless, online)| ProductRow {
            issuer_id: ISSUER_ID.into(),
            product: product.into(),
            currency: 156,
            contactless_no_pin_limit: contactless,
            online_no_pin_limit: online,
            updated_at: now,
            version: 0,
        },
    );
    store
        .insert_issuer(&issuer, &ranges, &products)
        .await
        .map_err(|e| failed(&e))?;
    for wallet in WALLETS {
        store
            .insert_token_requestor(&TokenRequestorRow {
                id: wallet.id.into(),
                name: wallet.name.into(),
                wallet: wallet.wallet.into(),
                api_key_hash: api_key_hash(wallet.api_key),
                webhook_url: Some(wallet_webhook_url(base_url, wallet.id)),
                webhook_secret: Some(
                    tsp.seal_secret(wallet.id, wallet.secret.as_bytes())
                        .map_err(|e| failed(&e))?,
                ),
                created_at: now,
            })
            .await
            .map_err(|e| failed(&e))?;
        store
            .insert_user(&UserRow {
                id: format!("usr_sandbox_{}", wallet.wallet),
                token_requestor_id: wallet.id.into(),
                account_id: ACCOUNT_ID.into(),
                created_at: now,
            })
            .await
            .map_err(|e| failed(&e))?;
    }
    tsp.reload_bins().await.map_err(|e| failed(&e))?;
    Ok(true)
}

/// Where a sandbox wallet's notifications go: the Cloud QuickPass app takes its own; the
/// other wallets' go to the sandbox's receiver, where anyone testing them reads them.
fn wallet_webhook_url(base_url: &str, wallet_id: &str) -> String {
    if wallet_id == QUICKPASS_TOKEN_REQUESTOR {
        format!("{base_url}/wallet/tsp/notifications")
    } else {
        format!("{base_url}/sandbox/v1/webhooks/{wallet_id}")
    }
}

/// Points the sandbox's endpoints at this run's address.
async fn refresh_urls(tsp: &Tsp, base_url: &str) -> Result<(), String> {
    let store = tsp.store();
    let failed = |e: &dyn std::fmt::Display| format!("updating the sandbox's addresses: {e}");
    store
        .set_issuer_endpoints(
            ISSUER_ID,
            &format!("{base_url}/sim/issuer/v1"),
            Some(&format!("{base_url}/sandbox/v1/webhooks/{ISSUER_ID}")),
        )
        .await
        .map_err(|e| failed(&e))?;
    for wallet in WALLETS {
        store
            .set_token_requestor_webhook(wallet.id, Some(&wallet_webhook_url(base_url, wallet.id)))
            .await
            .map_err(|e| failed(&e))?;
    }
    Ok(())
}

/// Every subscriber's webhook secret, for the sandbox's webhook receiver.
pub fn webhook_secrets() -> std::collections::HashMap<String, Vec<u8>> {
    let mut secrets: std::collections::HashMap<String, Vec<u8>> = WALLETS
        .iter()
        .map(|w| (w.id.to_owned(), w.secret.as_bytes().to_vec()))
        .collect();
    secrets.insert(ISSUER_ID.to_owned(), ISSUER_SECRET.as_bytes().to_vec());
    secrets
}
