//! The sandbox's side of the institution gateway, kept in the data directory under `upacp/`
//! and made on first start: the platform's PKI in UnionPay's shape (`root.pem`,
//! `middle.pem`, `sign.pem` and the 0600 keys) and the sandbox merchant 777290058110048 with
//! its own key and certificate (`merchant-777290058110048.pem`, `.key`, and both with the
//! chain as `.pfx` under UnionPay's test password `000000`) and the secure key of UnionPay's
//! own demos, `88888888`. docs/upacp.md tells integrators where to find them.

use std::path::{Path, PathBuf};

use cloudpass_crypto::OsRandom;
use cloudpass_crypto::upacp::{RsaDecryptingKey, RsaSigningKey};
use cloudpass_gateway::{Merchant, Merchants, Permissions, PlatformSigner};
use cloudpass_upacp::Certificate;
use cloudpass_upacp::pki::{self, PkiRequest, PlatformPki, TEST_SIGNER_NAME};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::data_dir;

pub const SANDBOX_MER_ID: &str = "777290058110048";
pub const SANDBOX_MERCHANT_NAME: &str = "cloudpass sandbox merchant";
/// The demo institution (`/demo-merchant`) and its second merchant number, without the
/// SDK-WAP permission.
pub const DEMO_SHOP_MER_ID: &str = "777290058110100";
pub const DEMO_SHOP_NO_SDK_WAP_MER_ID: &str = "777290058110101";
/// The secure key (signMethod 11/12) of UnionPay's demos; a sandbox fixture only.
pub const SANDBOX_SECURE_KEY: &str = "88888888";
/// The sandbox merchant's PFX password: that of UnionPay's test PFX, so SDK configurations
/// (`acpsdk.signCert.pwd=000000`) stay as they are; a sandbox fixture only.
pub const SANDBOX_PFX_PASSWORD: &str = "000000";
/// Characters of a generated PFX password: letters and digits that cannot be misread.
const PASSWORD_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
const PASSWORD_LENGTH: usize = 20;

/// The directory of the gateway's sandbox files.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("upacp")
}

/// The platform's signer and the sandbox's merchants, made on first start.
pub fn load_or_create(data_dir: &Path, now: i64) -> Result<(PlatformSigner, Merchants), String> {
    let dir = dir(data_dir);
    data_dir::create_private_dir(&dir)?;
    let random = OsRandom;
    let request = PkiRequest {
        signer_name: TEST_SIGNER_NAME,
        now,
        random: &random,
    };
    if !dir.join("sign.pem").exists() {
        let pki = PlatformPki::generate(&request).map_err(|e| e.to_string())?;
        for (name, issued) in [
            ("root", &pki.root),
            ("middle", &pki.middle),
            ("sign", &pki.signing),
            ("encrypt", &pki.encryption),
        ] {
            write_issued(&dir, name, issued, name != "root")?;
        }
    }
    let merchant_name = format!("merchant-{SANDBOX_MER_ID}");
    if !dir.join(format!("{merchant_name}.pem")).exists() {
        issue_merchant(data_dir, SANDBOX_MER_ID, &dir, now, SANDBOX_PFX_PASSWORD)?;
    } else if !dir.join(format!("{merchant_name}.pfx")).exists() {
        // A data directory made before merchants got a PFX.
        let merchant = pki::Issued {
            certificate: read_certificate(&dir.join(format!("{merchant_name}.pem")))?,
            pem: read_text(&dir.join(format!("{merchant_name}.pem")))?,
            key_pkcs8: read_key(&dir.join(format!("{merchant_name}.key")))?,
        };
        write_pfx(&dir, &dir, &merchant_name, &merchant, SANDBOX_PFX_PASSWORD)?;
    }
    let signer = PlatformSigner {
        key: RsaSigningKey::from_pkcs8_der(&read_key(&dir.join("sign.key"))?)
            .map_err(|e| e.to_string())?,
        certificate: read_certificate(&dir.join("sign.pem"))?,
        encryption_certificate: read_certificate(&dir.join("encrypt.pem"))?,
        decryption_key: RsaDecryptingKey::from_pkcs8_der(&read_key(&dir.join("encrypt.key"))?)
            .map_err(|e| e.to_string())?,
    };
    let mut merchants = Merchants::default();
    merchants.add(Merchant {
        mer_id: SANDBOX_MER_ID.into(),
        name: SANDBOX_MERCHANT_NAME.into(),
        certificate: Some(read_certificate(&dir.join(format!("{merchant_name}.pem")))?),
        secure_key: Some(Zeroizing::new(SANDBOX_SECURE_KEY.as_bytes().to_vec())),
        permissions: Permissions::ALL,
    });
    let without_sdk_wap = Permissions {
        sdk_wap: false,
        ..Permissions::ALL
    };
    for (mer_id, name, permissions) in [
        (DEMO_SHOP_MER_ID, "cloudpass demo shop", Permissions::ALL),
        (
            DEMO_SHOP_NO_SDK_WAP_MER_ID,
            "cloudpass demo shop (no SDK WAP)",
            without_sdk_wap,
        ),
    ] {
        let pem = dir.join(format!("merchant-{mer_id}.pem"));
        if !pem.exists() {
            issue_merchant(data_dir, mer_id, &dir, now, SANDBOX_PFX_PASSWORD)?;
        }
        merchants.add(Merchant {
            mer_id: mer_id.into(),
            name: name.into(),
            certificate: Some(read_certificate(&pem)?),
            secure_key: None,
            permissions,
        });
    }
    Ok((signer, merchants))
}

/// The demo institution, with its keys and the platform's CA from the data directory (made
/// by [`load_or_create`]); it reaches the gateway at `base_url`, over HTTP, as anyone would.
pub fn demo_shop(
    data_dir: &Path,
    base_url: &str,
    clock: std::sync::Arc<dyn cloudpass_core::Clock>,
    random: std::sync::Arc<dyn cloudpass_core::Random>,
) -> Result<cloudpass_sim::demo_shop::DemoShop, String> {
    use cloudpass_sim::demo_shop::{
        DemoShop, DemoShopParts, PlatformTrust, ShopMerchant, UpacpClient,
    };
    let dir = dir(data_dir);
    let merchant = |mer_id: &str| -> Result<ShopMerchant, String> {
        let name = format!("merchant-{mer_id}");
        Ok(ShopMerchant {
            mer_id: mer_id.into(),
            key: RsaSigningKey::from_pkcs8_der(&read_key(&dir.join(format!("{name}.key")))?)
                .map_err(|e| e.to_string())?,
            certificate: read_certificate(&dir.join(format!("{name}.pem")))?,
        })
    };
    let trust = PlatformTrust {
        root: read_certificate(&dir.join("root.pem"))?,
        middle: read_certificate(&dir.join("middle.pem"))?,
        signer_name: TEST_SIGNER_NAME.into(),
    };
    Ok(DemoShop::new(DemoShopParts {
        client: UpacpClient::new(base_url.to_owned(), trust).map_err(|e| e.to_string())?,
        main: merchant(DEMO_SHOP_MER_ID)?,
        no_sdk_wap: merchant(DEMO_SHOP_NO_SDK_WAP_MER_ID)?,
        public_base: base_url.to_owned(),
        clock,
        random,
    }))
}

/// Issues a merchant signing certificate under the platform's middle CA (as UnionPay's test
/// environment hands merchants theirs) and writes `merchant-<merId>.pem`, `.key` and `.pfx`
/// (the key, the certificate and the platform's chain under `pfx_password`), all 0600, into
/// `out_dir`. The platform's PKI must exist (`serve` makes it on first start).
pub fn issue_merchant(
    data_dir: &Path,
    mer_id: &str,
    out_dir: &Path,
    now: i64,
    pfx_password: &str,
) -> Result<(PathBuf, Certificate), String> {
    let dir = dir(data_dir);
    if !dir.join("middle.key").exists() {
        return Err(format!(
            "no platform PKI in {} (start `cloudpass serve` once to make it)",
            dir.display()
        ));
    }
    let middle = pki::Issued {
        certificate: read_certificate(&dir.join("middle.pem"))?,
        pem: read_text(&dir.join("middle.pem"))?,
        key_pkcs8: read_key(&dir.join("middle.key"))?,
    };
    let random = OsRandom;
    let request = PkiRequest {
        signer_name: TEST_SIGNER_NAME,
        now,
        random: &random,
    };
    let issued = pki::issue_merchant(&middle, mer_id, &request).map_err(|e| e.to_string())?;
    let name = format!("merchant-{mer_id}");
    write_issued(out_dir, &name, &issued, true)?;
    write_pfx(&dir, out_dir, &name, &issued, pfx_password)?;
    Ok((out_dir.join(format!("{name}.pem")), issued.certificate))
}

/// Writes `<name>.pfx`: the merchant's key and certificate with the platform's middle and
/// root CA (from `pki_dir`), under `password`.
fn write_pfx(
    pki_dir: &Path,
    out_dir: &Path,
    name: &str,
    merchant: &pki::Issued,
    password: &str,
) -> Result<(), String> {
    let middle = read_certificate(&pki_dir.join("middle.pem"))?;
    let root = read_certificate(&pki_dir.join("root.pem"))?;
    let pfx = merchant
        .to_pkcs12(&[&middle, &root], password)
        .map_err(|e| e.to_string())?;
    data_dir::write_private(&out_dir.join(format!("{name}.pfx")), &pfx)
}

/// A fresh PFX password for a merchant the platform issues a certificate to.
pub fn new_pfx_password() -> Zeroizing<String> {
    use cloudpass_core::Random;
    let random = OsRandom;
    let alphabet_size = PASSWORD_ALPHABET.len() as u64;
    let password: String = (0..PASSWORD_LENGTH)
        .map(|_| char::from(PASSWORD_ALPHABET[random.below(alphabet_size) as usize]))
        .collect();
    Zeroizing::new(password)
}

fn write_issued(
    dir: &Path,
    name: &str,
    issued: &pki::Issued,
    with_key: bool,
) -> Result<(), String> {
    data_dir::write_private(&dir.join(format!("{name}.pem")), issued.pem.as_bytes())?;
    if with_key {
        data_dir::write_private(
            &dir.join(format!("{name}.key")),
            issued.key_pem().as_bytes(),
        )?;
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_certificate(path: &Path) -> Result<Certificate, String> {
    Certificate::from_pem(&read_text(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_key(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let key = PrivatePkcs8KeyDer::from_pem_file(path)
        .map_err(|_| format!("{} holds no PKCS#8 private key", path.display()))?;
    Ok(Zeroizing::new(key.secret_pkcs8_der().to_vec()))
}

/// The payment control's checks in the sandbox: a card's kind from the sandbox bank's BIN
/// ranges; the SMS codes UnionPay publishes for its test cards (111111 on PC, 123456 on
/// phones; either is taken) for the published cards the sandbox bank holds; and, for every
/// other card, codes texted through the sandbox bank to the phone it holds (its SMS inbox).
pub struct SandboxPayer {
    published: Vec<cloudpass_sim::issuer_host::SimCard>,
    bank: std::sync::Arc<cloudpass_sim::issuer_host::IssuerHost>,
}

impl SandboxPayer {
    pub fn new(bank: std::sync::Arc<cloudpass_sim::issuer_host::IssuerHost>) -> SandboxPayer {
        SandboxPayer {
            published: crate::sandbox::cards(),
            bank,
        }
    }
}

/// UnionPay's published SMS codes for its test cards.
pub const PUBLISHED_SMS_CODES: &[&str] = &["111111", "123456"];

/// The ID numbers UnionPay publishes for its test cards' holders (certifTp 01).
const PUBLISHED_ID_NUMBERS: &[(&str, &str)] = &[
    (crate::sandbox::DEFAULT_PHONE_CARD, "510265790128303"),
    (crate::sandbox::STEP_UP_CARD, "510265790128303"),
    (crate::sandbox::PINGAN_DEBIT_CARD, "341126197709218366"),
];

fn published_id_number(card_number: &str) -> Option<&'static str> {
    PUBLISHED_ID_NUMBERS
        .iter()
        .find(|(number, _)| *number == card_number)
        .map(|(_, id)| *id)
}

impl cloudpass_gateway::PayerChecks for SandboxPayer {
    fn card_kind(&self, pan: &cloudpass_core::Pan) -> Option<cloudpass_gateway::CardKind> {
        use cloudpass_core::AccountNumber;
        crate::sandbox::CARD_BINS
            .iter()
            .find(|(prefix, _)| pan.expose().starts_with(prefix))
            .map(|(_, product)| match *product {
                "credit" => cloudpass_gateway::CardKind::Credit,
                _ => cloudpass_gateway::CardKind::Debit,
            })
    }

    fn published_sms_codes(&self, pan: &cloudpass_core::Pan) -> Vec<String> {
        use cloudpass_core::AccountNumber;
        if self
            .published
            .iter()
            .any(|card| card.number == pan.expose())
        {
            PUBLISHED_SMS_CODES
                .iter()
                .map(|code| (*code).to_owned())
                .collect()
        } else {
            Vec::new()
        }
    }

    fn holder(&self, pan: &cloudpass_core::Pan) -> Option<cloudpass_gateway::identity::Holder> {
        use cloudpass_core::AccountNumber;
        let card = self
            .published
            .iter()
            .find(|card| card.number == pan.expose())?;
        Some(cloudpass_gateway::identity::Holder {
            name: card.holder_name.clone(),
            phone: card.phone.clone(),
            id_number: published_id_number(&card.number).map(str::to_owned),
        })
    }

    fn pending_seconds(&self, pan: &cloudpass_core::Pan) -> Option<i64> {
        use cloudpass_core::AccountNumber;
        (pan.expose() == crate::sandbox::PENDING_CARD).then_some(crate::sandbox::PENDING_SECONDS)
    }

    fn send_text<'a>(
        &'a self,
        pan: &'a cloudpass_core::Pan,
        text: &'a str,
    ) -> cloudpass_gateway::BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            match self.bank.send_text(pan, text).await {
                Ok(sent_to) => sent_to,
                Err(error) => {
                    tracing::error!(error = %error, "sandbox bank: a text message could not be sent");
                    None
                }
            }
        })
    }

    fn test_cards(&self) -> Vec<cloudpass_gateway::TestCard> {
        self.published
            .iter()
            .map(|card| {
                let credit = card.funding == "credit";
                cloudpass_gateway::TestCard {
                    number: card.number.clone(),
                    kind: if credit {
                        cloudpass_gateway::CardKind::Credit
                    } else {
                        cloudpass_gateway::CardKind::Debit
                    },
                    sms_code: PUBLISHED_SMS_CODES[0].to_owned(),
                    then: {
                        let then = match (credit, &card.cvn2, &card.pin) {
                            (true, Some(cvn2), _) => {
                                format!("CVN2 {cvn2}, expiry {}", card.expiry)
                            }
                            (_, _, Some(pin)) => format!("PIN {pin}"),
                            _ => String::new(),
                        };
                        match card.number.as_str() {
                            crate::sandbox::INSUFFICIENT_FUNDS_CARD => {
                                format!("{then} — declined: holds 1.00 CNY (64)")
                            }
                            crate::sandbox::EXPIRED_CARD => {
                                format!("{then} — declined: expired (65)")
                            }
                            crate::sandbox::PENDING_CARD => format!(
                                "{then} — pending (05) for {} s, then paid",
                                crate::sandbox::PENDING_SECONDS
                            ),
                            _ => then,
                        }
                    },
                    holder: {
                        let id_number = published_id_number(&card.number)
                            .map(|id| format!(", ID {id}"))
                            .unwrap_or_default();
                        format!("{}, {}{id_number}", card.holder_name, card.phone)
                    },
                }
            })
            .collect()
    }
}

/// The gateway's terminal of the sandbox e-commerce acquirer, over the switch in process
/// (the same admission, MAC and journal as the ISO 8583 port), signed on.
pub async fn gateway_terminal(
    data_dir: &Path,
    switch: &std::sync::Arc<cloudpass_switch::Switch>,
    clock: &std::sync::Arc<dyn cloudpass_core::Clock>,
    random: &std::sync::Arc<dyn cloudpass_core::Random>,
) -> Result<std::sync::Arc<cloudpass_acquirer::Terminal>, String> {
    use crate::sandbox;
    let master =
        crate::app::sandbox_secret(&data_dir.join(crate::app::TERMINAL_MASTER_KEY_FILE), 16)?;
    let terminal = cloudpass_acquirer::Terminal::new(
        cloudpass_acquirer::TerminalConfig {
            terminal_id: sandbox::GATEWAY_TERMINAL.into(),
            merchant_id: sandbox::ECOMMERCE_MERCHANT_ID.into(),
            merchant_category: "5999".into(),
            merchant_name: "cloudpass gateway        Shanghai    CHN".into(),
            acquirer_id: sandbox::ECOMMERCE_ACQUIRER_ID.into(),
            no_pin_limit: cloudpass_core::Money::new(0, cloudpass_core::Currency::CNY),
            reversal_attempts: 3,
        },
        &master,
        std::sync::Arc::new(cloudpass_switch::InProcess::new(std::sync::Arc::clone(
            switch,
        ))),
        std::sync::Arc::clone(clock),
        std::sync::Arc::clone(random),
    )
    .map_err(|e| format!("the gateway's terminal: {e}"))?;
    terminal
        .sign_on()
        .await
        .map_err(|e| format!("the gateway's terminal cannot sign on: {e}"))?;
    Ok(std::sync::Arc::new(terminal))
}

/// Registered merchants' secure keys and the cards behind their tokens, sealed and opened
/// with the token service's data key (the same sealing as the participants' shared secrets),
/// bound to the merchant or the token.
pub struct SealedBy(pub std::sync::Arc<cloudpass_tsp::Tsp>);

impl cloudpass_gateway::MerchantSecrets for SealedBy {
    fn open(&self, mer_id: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.0
            .open_secret(&cloudpass_gateway::secret_owner(mer_id), sealed)
            .ok()
            .map(|secret| Zeroizing::new(secret.expose().to_vec()))
    }

    fn seal_card(&self, token: &str, card: &[u8]) -> Option<Vec<u8>> {
        self.0
            .seal_secret(&cloudpass_gateway::card_token_owner(token), card)
            .ok()
    }

    fn open_card(&self, token: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.0
            .open_secret(&cloudpass_gateway::card_token_owner(token), sealed)
            .ok()
            .map(|secret| Zeroizing::new(secret.expose().to_vec()))
    }
}
