//! Binding bank cards to an account (绑卡): the person types the card number and expiry (and
//! the CVN2 of a credit card); the token service asks the card's bank whether the card and
//! the data are right and has the bank text a code to the card's phone; typing the code
//! binds the card. No token is made here: a bound card is what the app later puts onto
//! devices. The card number is kept sealed by the token service's HSM and found by its keyed
//! fingerprint; the code by a keyed digest; nothing typed is echoed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloudpass_core::card_number::mask_digits;
use cloudpass_core::{AccountNumber, Clock, Expiry, Pan, Random};
use cloudpass_store::{AnyStore, StoreError, WALLET_CARDS_MAX, WalletCardRow, WalletStore};
use cloudpass_tsp::error::TspError;
use cloudpass_tsp::service::Tsp;
use subtle::ConstantTimeEq;

use crate::account::SignedIn;

/// The wallet's name as banks see it.
pub const WALLET_NAME: &str = "Cloud QuickPass";
/// How long a texted code lasts, and how many wrong codes end a binding.
pub const CODE_MILLIS: i64 = 5 * 60 * 1_000;
pub const CODE_TRIES: i64 = 3;
/// Cards one account may ask banks about in a window: each asks a bank and texts a phone
/// (which may not be the person's own), so guessing and texting cost the guesser.
pub const STARTS_PER_WINDOW: u32 = 5;
pub const STARTS_WINDOW_MILLIS: i64 = 10 * 60 * 1_000;
/// Accounts the limiter remembers at once; when full, windows that ended are forgotten.
const LIMITED_ACCOUNTS_MAX: usize = 100_000;

/// Why a card was not bound; each says what to do next and repeats nothing typed.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("that is not a valid card number; check the digits")]
    BadNumber,
    #[error("enter the expiry as on the card, YYMM (4 digits)")]
    BadExpiry,
    #[error("a CVN2 is the 3 digits on the back of the card")]
    BadCvn2,
    #[error("no bank of this network issues this card")]
    NoIssuer,
    #[error(
        "the bank did not accept this card; check the number, expiry and CVN2, or ask the bank"
    )]
    Declined,
    #[error("an account holds at most 20 cards; remove one first")]
    TooManyCards,
    #[error("too many cards were tried from this account; try again in 10 minutes")]
    TooManyStarts,
    #[error(
        "the bank could not text a code to the card's phone; ask the bank to check the phone it holds"
    )]
    NotSent,
    #[error("this binding is over; start again with the card number")]
    NoBinding,
    #[error("the code is wrong; {0} tries left")]
    WrongCode(i64),
    #[error("the code has expired; start again with the card number")]
    CodeExpired,
    #[error("too many wrong codes; start again with the card number")]
    TooManyCodes,
    #[error("this card is bound to your account already")]
    AlreadyBound,
    #[error("your account has no such card; it may have been removed already")]
    NoCard,
    #[error("this card was bound before the app kept its expiry; remove it and bind it again")]
    BindAgain,
    #[error("the wallet is not available right now; try again shortly")]
    Unavailable,
}

impl From<StoreError> for CardError {
    fn from(error: StoreError) -> Self {
        tracing::error!(error = %error, "wallet: the card store failed");
        CardError::Unavailable
    }
}

impl From<TspError> for CardError {
    fn from(error: TspError) -> Self {
        match error {
            TspError::Declined => CardError::Declined,
            TspError::NoIssuer => CardError::NoIssuer,
            other => {
                tracing::error!(error = %other, "wallet: the token service failed a binding");
                CardError::Unavailable
            }
        }
    }
}

/// A binding waiting for its code.
#[derive(Debug, Clone)]
pub struct Binding {
    pub id: String,
    pub card_masked: String,
    /// Where the bank texted the code, masked (known when it was just sent).
    pub phone_masked: Option<String>,
}

/// A bound card as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCard {
    pub id: String,
    /// First 6 and last 4 digits.
    pub masked: String,
    pub credit: bool,
}

/// The account's cards.
pub struct Cards {
    store: AnyStore,
    tsp: Arc<Tsp>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    /// Per account: when its window began and the bindings started in it.
    starts: Mutex<HashMap<String, (i64, u32)>>,
}

impl Cards {
    pub fn new(tsp: Arc<Tsp>, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Cards {
        Cards {
            store: tsp.store().clone(),
            tsp,
            clock,
            random,
            starts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a binding started by `user_id`; false when its window's starts are used up.
    fn may_start(&self, user_id: &str) -> bool {
        let now = self.clock.now_millis();
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        if starts.len() >= LIMITED_ACCOUNTS_MAX && !starts.contains_key(user_id) {
            starts.retain(|_, (began, _)| now - *began < STARTS_WINDOW_MILLIS);
            if starts.len() >= LIMITED_ACCOUNTS_MAX {
                return false;
            }
        }
        let window = starts.entry(user_id.to_owned()).or_insert((now, 0));
        if now - window.0 >= STARTS_WINDOW_MILLIS {
            *window = (now, 0);
        }
        if window.1 >= STARTS_PER_WINDOW {
            return false;
        }
        window.1 += 1;
        true
    }

    /// Checks the card with its bank and has a code texted to the card's phone.
    pub async fn start(
        &self,
        person: &SignedIn,
        number: &str,
        expiry: &str,
        cvn2: Option<&str>,
    ) -> Result<Binding, CardError> {
        let digits: String = number.chars().filter(|c| !c.is_whitespace()).collect();
        let pan = Pan::parse(&digits).map_err(|_| CardError::BadNumber)?;
        let expiry: Expiry = expiry.trim().parse().map_err(|_| CardError::BadExpiry)?;
        let cvn2 = cvn2.map(str::trim).filter(|c| !c.is_empty());
        if cvn2.is_some_and(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_digit())) {
            return Err(CardError::BadCvn2);
        }
        let bound = self.store.bound_wallet_cards(&person.user_id).await?;
        if i64::try_from(bound.len()).unwrap_or(i64::MAX) >= WALLET_CARDS_MAX {
            return Err(CardError::TooManyCards);
        }
        if !self.may_start(&person.user_id) {
            return Err(CardError::TooManyStarts);
        }
        let check = self
            .tsp
            .check_card_for_binding(&pan, expiry, cvn2, WALLET_NAME)
            .await?;
        let id = format!("wc_{:016x}", self.random.next_u64());
        let code = format!("{:06}", self.random.below(1_000_000));
        let now = self.clock.now_millis();
        let row = WalletCardRow {
            id: id.clone(),
            user_id: person.user_id.clone(),
            fingerprint: self.tsp.card_fingerprint(&pan)?,
            pan_sealed: self
                .tsp
                .seal_secret(&sealing_owner(&id), pan.expose().as_bytes())?,
            pan_masked: mask_digits(pan.expose()),
            funding: check.funding,
            product: check.product,
            status: "pending".into(),
            code_digest: Some(self.tsp.binding_code_digest(&id, &code)?),
            code_attempts: 0,
            code_expires_at: now + CODE_MILLIS,
            created_at: now,
            bound_at: None,
            expiry_sealed: Some(
                self.tsp
                    .seal_secret(&expiry_owner(&id), expiry.to_wire().as_bytes())?,
            ),
        };
        self.store.start_wallet_binding(&row).await?;
        let phone_masked = self
            .tsp
            .send_binding_code(&pan, &code, WALLET_NAME)
            .await?
            .ok_or(CardError::NotSent)?;
        Ok(Binding {
            id,
            card_masked: row.pan_masked,
            phone_masked: Some(phone_masked),
        })
    }

    /// The account's binding `binding_id` while it waits for its code.
    pub async fn pending(
        &self,
        person: &SignedIn,
        binding_id: &str,
    ) -> Result<Option<Binding>, CardError> {
        let row = self.store.wallet_card(&person.user_id, binding_id).await?;
        Ok(row
            .filter(|row| row.status == "pending")
            .map(|row| Binding {
                id: row.id,
                card_masked: row.pan_masked,
                phone_masked: None,
            }))
    }

    /// Binds the pending card `binding_id` when `code` is the one texted.
    pub async fn confirm(
        &self,
        person: &SignedIn,
        binding_id: &str,
        code: &str,
    ) -> Result<BoundCard, CardError> {
        let row = self
            .store
            .wallet_card(&person.user_id, binding_id)
            .await?
            .filter(|row| row.status == "pending")
            .ok_or(CardError::NoBinding)?;
        if row.code_attempts >= CODE_TRIES {
            return Err(CardError::TooManyCodes);
        }
        if self.clock.now_millis() >= row.code_expires_at {
            return Err(CardError::CodeExpired);
        }
        let typed = self.tsp.binding_code_digest(&row.id, code.trim())?;
        let right = row
            .code_digest
            .as_deref()
            .is_some_and(|kept| bool::from(kept.ct_eq(&typed)));
        if !right {
            let attempts = row.code_attempts + 1;
            self.store
                .set_wallet_code_attempts(&row.id, attempts)
                .await?;
            return Err(match CODE_TRIES - attempts {
                0 => CardError::TooManyCodes,
                left => CardError::WrongCode(left),
            });
        }
        if !self
            .store
            .bind_wallet_card(&row.id, self.clock.now_millis())
            .await?
        {
            return Err(CardError::AlreadyBound);
        }
        Ok(bound_card(&row))
    }

    /// Unbinds one of the account's cards (解绑).
    pub async fn remove(&self, person: &SignedIn, card_id: &str) -> Result<(), CardError> {
        if self
            .store
            .remove_wallet_card(&person.user_id, card_id)
            .await?
        {
            Ok(())
        } else {
            Err(CardError::NoCard)
        }
    }

    /// The account's bound cards, oldest first.
    pub async fn list(&self, person: &SignedIn) -> Result<Vec<BoundCard>, CardError> {
        let rows = self.store.bound_wallet_cards(&person.user_id).await?;
        Ok(rows.iter().map(bound_card).collect())
    }
}

/// Whose secret a sealed card number is, for the HSM's associated data.
fn sealing_owner(card_id: &str) -> String {
    format!("wallet-card {card_id}")
}

/// Whose secret a sealed expiry is.
fn expiry_owner(card_id: &str) -> String {
    format!("wallet-card-expiry {card_id}")
}

/// A bound card's number and expiry, opened for the moment they are needed (putting the card
/// onto a device).
pub(crate) struct OpenedCard {
    pub pan: Pan,
    pub expiry: Expiry,
}

impl Cards {
    /// The account's bound card `card_id`, its number and expiry opened.
    pub(crate) async fn open(
        &self,
        person: &SignedIn,
        card_id: &str,
    ) -> Result<OpenedCard, CardError> {
        let row = self
            .store
            .wallet_card(&person.user_id, card_id)
            .await?
            .filter(|row| row.status == "bound")
            .ok_or(CardError::NoCard)?;
        let sealed_expiry = row.expiry_sealed.as_deref().ok_or(CardError::BindAgain)?;
        let number = self
            .tsp
            .open_secret(&sealing_owner(&row.id), &row.pan_sealed)?;
        let expiry = self
            .tsp
            .open_secret(&expiry_owner(&row.id), sealed_expiry)?;
        let pan = std::str::from_utf8(number.expose())
            .ok()
            .and_then(|digits| Pan::parse(digits).ok())
            .ok_or(CardError::Unavailable)?;
        let expiry = std::str::from_utf8(expiry.expose())
            .ok()
            .and_then(|text| text.parse::<Expiry>().ok())
            .ok_or(CardError::Unavailable)?;
        Ok(OpenedCard { pan, expiry })
    }
}

fn bound_card(row: &WalletCardRow) -> BoundCard {
    BoundCard {
        id: row.id.clone(),
        masked: row.pan_masked.clone(),
        credit: row.funding == "credit",
    }
}
