//! Accounts of the Cloud QuickPass app: sign up with a phone number and a password, log in,
//! log out. The decisions (policy, lockout, session lifetime) are made here on values; the
//! store only records them. A login that fails says the same whether the phone number has
//! an account or not, and takes as long.

use std::sync::Arc;

use cloudpass_core::{Clock, Random};
use cloudpass_store::{AccountRow, AnyStore, StoreError, WalletSessionRow, WalletStore};
use zeroize::Zeroizing;

use crate::password::{self, PasswordError};
use crate::session;

/// Wrong passwords in a row that lock an account, and for how long.
pub const LOGIN_FAILURES_MAX: i64 = 5;
pub const LOCK_MILLIS: i64 = 15 * 60 * 1_000;
/// How long a session lasts after logging in.
pub const SESSION_MILLIS: i64 = 12 * 60 * 60 * 1_000;

/// A mainland mobile number: 11 digits starting with 1.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(text: &str) -> Result<Phone, AccountError> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() == 11
            && digits.starts_with('1')
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            Ok(Phone(digits))
        } else {
            Err(AccountError::PhoneInvalid)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `138****0001`.
    pub fn masked(&self) -> String {
        format!("{}****{}", &self.0[..3], &self.0[7..])
    }
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// Why an account step was refused; each says what to do next and repeats nothing typed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("enter an 11-digit mobile number starting with 1")]
    PhoneInvalid,
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("the two passwords differ; type the same password twice")]
    PasswordsDiffer,
    #[error("this phone number has an account already; log in instead")]
    PhoneTaken,
    #[error("the phone number or password is wrong")]
    WrongCredentials,
    #[error("too many wrong passwords; the account is locked for {0} more minutes")]
    Locked(i64),
    #[error("too many failed logins from your network address; try again in a minute")]
    AddressThrottled,
    #[error("the wallet is not available right now; try again shortly")]
    Unavailable,
}

impl From<StoreError> for AccountError {
    fn from(error: StoreError) -> Self {
        tracing::error!(error = %error, "wallet: the account store failed");
        AccountError::Unavailable
    }
}

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    pub phone: Phone,
}

/// A new session: the cookie's token and when it ends.
pub struct NewSession {
    pub token: Zeroizing<String>,
    pub max_age_seconds: i64,
}

/// The accounts, over the platform's store.
pub struct Accounts {
    store: AnyStore,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    /// Verified against when a phone number has no account (see `password::decoy`); made
    /// on the first such login, not at start.
    decoy_hash: std::sync::OnceLock<String>,
}

impl Accounts {
    pub fn new(store: AnyStore, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Accounts {
        Accounts {
            store,
            clock,
            random,
            decoy_hash: std::sync::OnceLock::new(),
        }
    }

    pub async fn sign_up(
        &self,
        phone: &str,
        password: &str,
        repeated: &str,
    ) -> Result<NewSession, AccountError> {
        let phone = Phone::parse(phone)?;
        password::check_policy(password)?;
        if password != repeated {
            return Err(AccountError::PasswordsDiffer);
        }
        let now = self.clock.now_millis();
        let user = AccountRow {
            id: format!(
                "u_{}",
                &session::token_hash(&session::new_token(self.random.as_ref()))[..24]
            ),
            phone: phone.as_str().to_owned(),
            password_hash: password::hash(password, self.random.as_ref())?,
            failed_logins: 0,
            locked_until: 0,
            created_at: now,
        };
        if !self.store.insert_account(&user).await? {
            return Err(AccountError::PhoneTaken);
        }
        self.open_session(&user.id, now).await
    }

    pub async fn log_in(&self, phone: &str, password: &str) -> Result<NewSession, AccountError> {
        let now = self.clock.now_millis();
        let user = match Phone::parse(phone) {
            Ok(phone) => self.store.account_by_phone(phone.as_str()).await?,
            Err(_) => None,
        };
        let Some(user) = user else {
            let decoy = self
                .decoy_hash
                .get_or_init(|| password::decoy(self.random.as_ref()));
            password::verify(password, decoy);
            return Err(AccountError::WrongCredentials);
        };
        if user.locked_until > now {
            return Err(AccountError::Locked(minutes_left(user.locked_until, now)));
        }
        if !password::verify(password, &user.password_hash) {
            let failures = user.failed_logins + 1;
            let locked_until = if failures >= LOGIN_FAILURES_MAX {
                now + LOCK_MILLIS
            } else {
                0
            };
            // A lock starts a new count: after it, five more tries.
            let recorded = if locked_until > 0 { 0 } else { failures };
            self.store
                .set_login_failures(&user.id, recorded, locked_until)
                .await?;
            return Err(if locked_until > 0 {
                AccountError::Locked(minutes_left(locked_until, now))
            } else {
                AccountError::WrongCredentials
            });
        }
        if user.failed_logins > 0 || user.locked_until > 0 {
            self.store.set_login_failures(&user.id, 0, 0).await?;
        }
        self.open_session(&user.id, now).await
    }

    /// The person a session cookie belongs to, if it is live.
    pub async fn signed_in(&self, token: &str) -> Result<Option<SignedIn>, AccountError> {
        let now = self.clock.now_millis();
        let found = self
            .store
            .wallet_session(&session::token_hash(token), now)
            .await?;
        Ok(found.and_then(|(_, user)| {
            Some(SignedIn {
                user_id: user.id,
                phone: Phone::parse(&user.phone).ok()?,
            })
        }))
    }

    pub async fn log_out(&self, token: &str) -> Result<(), AccountError> {
        self.store
            .delete_wallet_session(&session::token_hash(token))
            .await?;
        Ok(())
    }

    async fn open_session(&self, user_id: &str, now: i64) -> Result<NewSession, AccountError> {
        // Expired sessions go as new ones come: the table stays the size of the live ones.
        self.store.delete_expired_wallet_sessions(now).await?;
        let token = session::new_token(self.random.as_ref());
        self.store
            .insert_wallet_session(&WalletSessionRow {
                token_hash: session::token_hash(&token),
                user_id: user_id.to_owned(),
                created_at: now,
                expires_at: now + SESSION_MILLIS,
            })
            .await?;
        Ok(NewSession {
            token,
            max_age_seconds: SESSION_MILLIS / 1_000,
        })
    }
}

fn minutes_left(until: i64, now: i64) -> i64 {
    ((until - now) + 59_999) / 60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_eleven_digits_from_one_and_shown_masked() {
        let phone = Phone::parse("138 0000 0001").unwrap();
        assert_eq!(phone.as_str(), "13800000001");
        assert_eq!(phone.masked(), "138****0001");
        assert_eq!(format!("{phone:?}"), "Phone(138****0001)");
        for bad in [
            "2380000000",
            "23800000001",
            "1380000000a",
            "138000000012",
            "",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minutes_left_round_up() {
        assert_eq!(minutes_left(LOCK_MILLIS, 0), 15);
        assert_eq!(minutes_left(60_001, 0), 2);
        assert_eq!(minutes_left(1, 0), 1);
    }
}
