//! `cloudpass merchant …`: the institution gateway's merchants, registered in the platform's
//! store (the same database `serve` uses; a running gateway sees a change within
//! `cloudpass_gateway::MERCHANT_CACHE_MILLIS`). A merchant is its `merId`, a name, the
//! certificate its requests are signed with (signMethod 01; `certId` is its decimal serial)
//! and its permissions. The certificate is public; when the platform issues one
//! (`--issue-to`), the key is written to the merchant's directory only. The one secret kept is
//! a secure key for signMethod 11 and 12 (`merchant secure-key`), sealed under the platform's
//! data key (which needs the platform's master key, as `serve` does).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use cloudpass::sandbox_upacp::{self, SANDBOX_MER_ID};
use cloudpass_core::{Clock, SystemClock};
use cloudpass_gateway::Permissions;
use cloudpass_store::{GatewayStore, MerchantRow};
use cloudpass_upacp::Certificate;

use super::CliResult;

#[derive(Subcommand)]
pub enum MerchantCommand {
    /// Register a merchant with its certificate (or one the platform issues).
    Add {
        /// `merId`: 15 letters or digits.
        #[arg(long)]
        mer_id: String,
        #[arg(long)]
        name: String,
        /// The merchant's signing certificate (PEM) its requests are verified with.
        #[arg(
            long,
            conflicts_with = "issue_to",
            required_unless_present = "issue_to"
        )]
        certificate: Option<PathBuf>,
        /// Issue a certificate under the platform's middle CA and write
        /// `merchant-<merId>.pem`, `.key`, `.pfx` (key, certificate and the platform's chain,
        /// for SDKs that load a PFX) and `.pfx-password` (the PFX's fresh password), all 0600,
        /// into this directory.
        #[arg(long)]
        issue_to: Option<PathBuf>,
        /// Comma-separated permissions, or `all`: app_consume, back_consume, pc_consume,
        /// api_wap, sdk_wap, undo, refund, query, card_details.
        #[arg(
            long,
            default_value = "app_consume,pc_consume,api_wap,undo,refund,query"
        )]
        permissions: String,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
    /// Every registered merchant.
    List {
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
    /// One merchant: its certificate (certId, CN, validity) and permissions.
    Show {
        mer_id: String,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
    /// Give a merchant permissions.
    Grant {
        mer_id: String,
        /// Permission names (or `all`).
        #[arg(required = true)]
        permissions: Vec<String>,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
    /// The self-service certification checklist: which standard cases the merchant's own
    /// traffic has passed in the sandbox.
    Certification {
        #[arg(long)]
        mer_id: String,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
    /// Sandbox settings of a merchant (the sandbox merchant too).
    Set {
        mer_id: String,
        /// Count the first N sends of each notification as failed, whatever the merchant
        /// answers, to watch the retries come (0 ends the drill). With the default schedule a
        /// notification is sent 5 times: 5 or more means it is never acknowledged.
        #[arg(long)]
        failed_notification_sends: u8,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
    /// Take permissions from a merchant.
    Revoke {
        mer_id: String,
        #[arg(required = true)]
        permissions: Vec<String>,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
    /// Give a merchant a secure key for signMethod 11 (SHA-256) and 12 (SM3), kept sealed
    /// under the platform's data key; or take it away.
    SecureKey {
        mer_id: String,
        /// A file holding the key: 8 to 64 printable characters, no spaces (a trailing
        /// newline is ignored). Never given on the command line, where `ps` would show it.
        #[arg(long, conflicts_with = "remove", required_unless_present = "remove")]
        file: Option<PathBuf>,
        /// Take the secure key away: the merchant signs with signMethod 01 only.
        #[arg(long)]
        remove: bool,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
}

pub fn run(command: MerchantCommand) -> CliResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match command {
            MerchantCommand::Add {
                mer_id,
                name,
                certificate,
                issue_to,
                permissions,
                data_dir,
            } => {
                add(
                    &data_dir,
                    &mer_id,
                    &name,
                    certificate,
                    issue_to,
                    &permissions,
                )
                .await
            }
            MerchantCommand::List { data_dir } => list(&data_dir).await,
            MerchantCommand::Show { mer_id, data_dir } => {
                let store = super::tokens::open(&data_dir).await?;
                print_merchant(&registered(&store, &mer_id).await?);
                Ok(())
            }
            MerchantCommand::Certification { mer_id, data_dir } => {
                certification(&data_dir, &mer_id).await
            }
            MerchantCommand::Set {
                mer_id,
                failed_notification_sends,
                data_dir,
            } => {
                let store = super::tokens::open(&data_dir).await?;
                if mer_id != SANDBOX_MER_ID {
                    registered(&store, &mer_id).await?;
                }
                store
                    .set_failed_notification_sends(&mer_id, i64::from(failed_notification_sends))
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "merchant {mer_id}: the first {failed_notification_sends} sends of each notification count as failed"
                );
                Ok(())
            }
            MerchantCommand::Grant {
                mer_id,
                permissions,
                data_dir,
            } => change(&data_dir, &mer_id, &permissions, true).await,
            MerchantCommand::Revoke {
                mer_id,
                permissions,
                data_dir,
            } => change(&data_dir, &mer_id, &permissions, false).await,
            MerchantCommand::SecureKey {
                mer_id,
                file,
                remove: _,
                data_dir,
            } => secure_key(&data_dir, &mer_id, file.as_deref()).await,
        }
    })
}

fn check_mer_id(mer_id: &str) -> CliResult {
    if mer_id.len() != 15 || !mer_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("a merId is 15 letters or digits".into());
    }
    if mer_id == SANDBOX_MER_ID {
        return Err(format!(
            "{SANDBOX_MER_ID} is the sandbox merchant, made from the data directory; choose another merId"
        ));
    }
    Ok(())
}

fn now_seconds() -> i64 {
    SystemClock.now_millis().div_euclid(1_000)
}

async fn add(
    data_dir: &Path,
    mer_id: &str,
    name: &str,
    certificate: Option<PathBuf>,
    issue_to: Option<PathBuf>,
    permissions: &str,
) -> CliResult {
    check_mer_id(mer_id)?;
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err("a merchant's name is 1 to 128 characters".into());
    }
    let permissions = Permissions::parse(permissions).map_err(|e| e.to_string())?;
    let store = super::tokens::open(data_dir).await?;
    if store
        .merchant(mer_id)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err(format!(
            "{mer_id} is already registered (see `cloudpass merchant show {mer_id}`)"
        ));
    }
    let (pem, certificate) = match (certificate, issue_to) {
        (Some(path), _) => {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let certificate =
                Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
            (pem, certificate)
        }
        (None, Some(dir)) => {
            let key = dir.join(format!("merchant-{mer_id}.key"));
            for extension in ["pem", "key", "pfx", "pfx-password"] {
                let file = dir.join(format!("merchant-{mer_id}.{extension}"));
                if file.exists() {
                    return Err(format!("{} exists; it is not overwritten", file.display()));
                }
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let password = sandbox_upacp::new_pfx_password();
            let password_path = dir.join(format!("merchant-{mer_id}.pfx-password"));
            cloudpass::data_dir::write_private(&password_path, password.as_bytes())?;
            let issued =
                sandbox_upacp::issue_merchant(data_dir, mer_id, &dir, now_seconds(), &password);
            if issued.is_err() {
                let _ = std::fs::remove_file(&password_path);
            }
            let (path, certificate) = issued?;
            println!(
                "issued {}, {} and {} (its password is in {})",
                path.display(),
                key.display(),
                path.with_extension("pfx").display(),
                password_path.display()
            );
            let pem = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            (pem, certificate)
        }
        (None, None) => return Err("give --certificate FILE or --issue-to DIR".into()),
    };
    check_certificate(&certificate)?;
    let now = SystemClock.now_millis();
    let row = MerchantRow {
        mer_id: mer_id.to_owned(),
        name: name.trim().to_owned(),
        certificate_pem: pem,
        permissions: permissions.to_text(),
        secure_key_sealed: None,
        created_at: now,
        updated_at: now,
    };
    if !store
        .insert_merchant(&row)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!("{mer_id} was registered meanwhile"));
    }
    println!("registered");
    print_merchant(&row);
    Ok(())
}

/// A certificate requests can be verified with: not a CA, RSA, valid now.
fn check_certificate(certificate: &Certificate) -> CliResult {
    if certificate.is_ca() {
        return Err("the certificate is a CA's, not a merchant's signing certificate".into());
    }
    if certificate.rsa_public_key_der().is_none() {
        return Err("the certificate's key is not RSA (signMethod 01 is RSA)".into());
    }
    let (from, until) = certificate.validity();
    let now = now_seconds();
    if now < from || now > until {
        return Err("the certificate is outside its validity dates".into());
    }
    Ok(())
}

async fn registered(
    store: &cloudpass_store::AnyStore,
    mer_id: &str,
) -> Result<MerchantRow, String> {
    store
        .merchant(mer_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("no merchant {mer_id} is registered (see `cloudpass merchant list`)")
        })
}

async fn list(data_dir: &Path) -> CliResult {
    let store = super::tokens::open(data_dir).await?;
    let merchants = store.merchants().await.map_err(|e| e.to_string())?;
    println!(
        "{SANDBOX_MER_ID}  cloudpass sandbox merchant (from the data directory; every permission)"
    );
    for row in merchants {
        let cert_id = Certificate::from_pem(&row.certificate_pem)
            .map(|c| c.cert_id())
            .unwrap_or_else(|_| "unreadable certificate".into());
        println!(
            "{}  {}  certId {}  {}",
            row.mer_id,
            row.name,
            cert_id,
            if row.permissions.is_empty() {
                "(no permissions)"
            } else {
                &row.permissions
            }
        );
    }
    Ok(())
}

async fn change(data_dir: &Path, mer_id: &str, names: &[String], on: bool) -> CliResult {
    let store = super::tokens::open(data_dir).await?;
    let mut row = registered(&store, mer_id).await?;
    let mut permissions = Permissions::parse(&row.permissions).map_err(|e| e.to_string())?;
    for name in names.iter().flat_map(|n| n.split(',')).map(str::trim) {
        if name == "all" {
            permissions = if on {
                Permissions::ALL
            } else {
                Permissions::NONE
            };
        } else {
            permissions.set(name, on).map_err(|e| e.to_string())?;
        }
    }
    row.permissions = permissions.to_text();
    row.updated_at = SystemClock.now_millis();
    if !store
        .update_merchant(&row)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!("{mer_id} is no longer registered"));
    }
    print_merchant(&row);
    Ok(())
}

async fn certification(data_dir: &Path, mer_id: &str) -> CliResult {
    let store = super::tokens::open(data_dir).await?;
    if mer_id != SANDBOX_MER_ID {
        registered(&store, mer_id).await?;
    }
    let recorded = store
        .certification_of(mer_id)
        .await
        .map_err(|e| e.to_string())?;
    let report = cloudpass_gateway::certification::checklist(mer_id, &recorded);
    println!(
        "merchant {mer_id}: {} of {} cases passed{}",
        report.passed,
        report.total,
        if report.complete { " — complete" } else { "" }
    );
    for case in &report.cases {
        let when = case
            .passed_at
            .map(|at| cloudpass_upacp::time::format_beijing(at.div_euclid(1_000)))
            .unwrap_or_default();
        println!(
            "  [{}] {:<26} {:<15} {}",
            if case.passed { "x" } else { " " },
            case.case,
            when,
            case.description
        );
    }
    Ok(())
}

/// Seals the key in `file` for `mer_id` (or removes the merchant's key when `file` is none).
async fn secure_key(data_dir: &Path, mer_id: &str, file: Option<&Path>) -> CliResult {
    let store = super::tokens::open(data_dir).await?;
    let mut row = registered(&store, mer_id).await?;
    row.secure_key_sealed = match file {
        Some(path) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            );
            let key = text.trim_ascii_end();
            if !cloudpass_gateway::secure_key_is_valid(key) {
                return Err(format!(
                    "{} does not hold a secure key: 8 to 64 printable characters, no spaces",
                    path.display()
                ));
            }
            let tsp = sealing_service(data_dir, &store).await?;
            Some(
                tsp.seal_secret(&cloudpass_gateway::secret_owner(mer_id), key)
                    .map_err(|e| format!("the key could not be sealed: {e}"))?,
            )
        }
        None => None,
    };
    row.updated_at = SystemClock.now_millis();
    if !store
        .update_merchant(&row)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!("{mer_id} was removed meanwhile"));
    }
    println!(
        "merchant {mer_id}: {}",
        if row.secure_key_sealed.is_some() {
            "secure key set (signMethod 11 and 12)"
        } else {
            "secure key removed (signMethod 01 only)"
        }
    );
    Ok(())
}

/// The token service over `store` with the platform's master key — never a fresh one: its
/// data key seals merchants' secure keys as it seals participants' secrets.
async fn sealing_service(
    data_dir: &Path,
    store: &cloudpass_store::AnyStore,
) -> Result<std::sync::Arc<cloudpass_tsp::Tsp>, String> {
    use std::sync::Arc;

    use cloudpass::master_key;
    use cloudpass_core::Random;
    use cloudpass_crypto::{Hsm, OsRandom, SoftHsm};

    let provider = master_key::provider_from(None);
    if provider.is_none() && !data_dir.join(master_key::SANDBOX_MASTER_KEY_FILE).exists() {
        return Err(format!(
            "no master key: {} is missing and {} is not set (start `cloudpass serve` first)",
            data_dir.join(master_key::SANDBOX_MASTER_KEY_FILE).display(),
            master_key::MASTER_KEY_VARIABLE
        ));
    }
    let (master, _) = master_key::load(provider.as_ref(), data_dir, false)?;
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let hsm: Arc<dyn Hsm> = Arc::new(SoftHsm::new(master, Arc::clone(&random)));
    let clock: Arc<dyn cloudpass_core::Clock> = Arc::new(SystemClock);
    let issuers = cloudpass_tsp::issuer_client::HttpIssuerClient::new(
        std::time::Duration::from_secs(10),
        1,
        None,
        Arc::clone(&clock),
    )
    .map_err(|e| e.to_string())?;
    let tsp = cloudpass_tsp::Tsp::new(
        store.clone(),
        hsm,
        Arc::new(issuers),
        clock,
        random,
        cloudpass_tsp::TspConfig::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(tsp))
}

fn print_merchant(row: &MerchantRow) {
    println!("merId        {}", row.mer_id);
    println!("name         {}", row.name);
    match Certificate::from_pem(&row.certificate_pem) {
        Ok(certificate) => {
            let (from, until) = certificate.validity();
            println!("certId       {}", certificate.cert_id());
            println!("certificate  CN {}", certificate.common_name());
            println!(
                "valid        {} to {} (Beijing)",
                cloudpass_upacp::time::format_beijing(from),
                cloudpass_upacp::time::format_beijing(until)
            );
        }
        Err(_) => println!("certificate  unreadable"),
    }
    println!(
        "permissions  {}",
        if row.permissions.is_empty() {
            "none"
        } else {
            &row.permissions
        }
    );
    println!(
        "secure key   {}",
        if row.secure_key_sealed.is_some() {
            "set (signMethod 11 and 12)"
        } else {
            "none (signMethod 01 only)"
        }
    );
}
