//! The token lifecycle: a pure state machine over every event that can touch a token, and
//! who may cause each one. docs/token-lifecycle.md is this module as a table; a test walks
//! every (state, event, channel) combination.
//!
//! A token is suspended while at least one *hold* is on it. Holds remember why: the wallet
//! suspended it, the bank suspended it, the card was reported lost or stolen, or the device
//! was reported lost. Each hold can be lifted only by the party and event that may undo it,
//! so a token the bank suspended cannot be resumed from the phone, and "device found"
//! resumes exactly the tokens that "device lost" suspended.

use std::fmt;

/// Who asks for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The token requestor: the wallet app on the cardholder's behalf, or the handset maker's
    /// device management (both reach the TSP through the token requestor API).
    Wallet,
    /// The issuing bank.
    Issuer,
    /// The token service itself (completed ID&V, automatic clean-up).
    Network,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Wallet, Channel::Issuer, Channel::Network];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Wallet => "wallet",
            Channel::Issuer => "issuer",
            Channel::Network => "network",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's status as the outside world sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenStatus {
    /// Created, waiting for ID&V (step-up) to complete.
    Pending,
    Active,
    Suspended,
    /// Final.
    Deleted,
}

impl TokenStatus {
    pub const ALL: [TokenStatus; 4] = [
        TokenStatus::Pending,
        TokenStatus::Active,
        TokenStatus::Suspended,
        TokenStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Pending => "pending",
            TokenStatus::Active => "active",
            TokenStatus::Suspended => "suspended",
            TokenStatus::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<TokenStatus> {
        [
            TokenStatus::Pending,
            TokenStatus::Active,
            TokenStatus::Suspended,
            TokenStatus::Deleted,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for TokenStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token is suspended. A token may carry several at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hold {
    /// The cardholder suspended it through the wallet or handset maker (挂失).
    Wallet,
    /// The bank suspended this token.
    Issuer,
    /// The bank reported the physical card lost.
    CardLost,
    /// The bank reported the physical card stolen.
    CardStolen,
    /// The device was reported lost.
    DeviceLost,
}

impl Hold {
    pub const ALL: [Hold; 5] = [
        Hold::Wallet,
        Hold::Issuer,
        Hold::CardLost,
        Hold::CardStolen,
        Hold::DeviceLost,
    ];

    fn bit(self) -> u8 {
        match self {
            Hold::Wallet => 1,
            Hold::Issuer => 2,
            Hold::CardLost => 4,
            Hold::CardStolen => 8,
            Hold::DeviceLost => 16,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Wallet => "wallet",
            Hold::Issuer => "issuer",
            Hold::CardLost => "card_lost",
            Hold::CardStolen => "card_stolen",
            Hold::DeviceLost => "device_lost",
        }
    }
}

/// A set of holds, stored as a small bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Holds(u8);

impl Holds {
    pub const NONE: Holds = Holds(0);

    pub fn from_bits(bits: u8) -> Option<Holds> {
        (bits < 32).then_some(Holds(bits))
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, hold: Hold) -> bool {
        self.0 & hold.bit() != 0
    }

    pub fn with(self, hold: Hold) -> Holds {
        Holds(self.0 | hold.bit())
    }

    pub fn without(self, hold: Hold) -> Holds {
        Holds(self.0 & !hold.bit())
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Hold> {
        Hold::ALL.into_iter().filter(move |h| self.contains(*h))
    }
}

macro_rules! reasons {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

reasons!(
    /// Why a token is suspended (EMVCo/VTS reason codes).
    SuspendReason { Lost = "LOST", Stolen = "STOLEN", Fraudulent = "FRAUDULENT", Other = "OTHER" }
);

reasons!(
    /// Why a token is resumed.
    ResumeReason { Found = "FOUND", FraudCleared = "FRAUD_CLEARED", Other = "OTHER" }
);

reasons!(
    /// Why a token is deleted.
    DeleteReason {
        Lost = "LOST",
        Stolen = "STOLEN",
        Fraudulent = "FRAUDULENT",
        AccountClosed = "ACCOUNT_CLOSED",
        ConsumerDeleted = "CONSUMER_DELETED",
        DeviceWiped = "DEVICE_WIPED",
        AccountSignedOut = "ACCOUNT_SIGNED_OUT",
        DeviceUnlockRemoved = "DEVICE_UNLOCK_REMOVED",
        StepUpFailed = "STEP_UP_FAILED",
        Other = "OTHER",
    }
);

impl SuspendReason {
    /// A suspension for theft or fraud is not expected to be lifted: the device's default
    /// card moves to another token.
    pub fn is_permanent(self) -> bool {
        matches!(self, SuspendReason::Stolen | SuspendReason::Fraudulent)
    }
}

/// Everything that can happen to one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// ID&V completed: the token may be used.
    Activate,
    Suspend(SuspendReason),
    Resume(ResumeReason),
    Delete(DeleteReason),
    /// New metadata (card art, limits, product) from the bank.
    UpdateMetadata,
    /// The physical card behind the token.
    CardLost,
    CardStolen,
    CardFound,
    /// New card number and/or expiry: the token survives and maps to the new card.
    CardReissued,
    CardClosed,
    /// The device the token lives on.
    DeviceLost,
    DeviceFound,
    DeviceWiped,
    /// The wallet account signed out of the device.
    AccountSignedOut,
    /// The device's passcode or fingerprint was removed.
    DeviceUnlockRemoved,
}

impl LifecycleEvent {
    /// Every event, with each reason variant, for exhaustive tests and the docs table.
    pub fn all() -> Vec<LifecycleEvent> {
        let mut events = vec![LifecycleEvent::Activate];
        events.extend(
            SuspendReason::ALL
                .iter()
                .map(|r| LifecycleEvent::Suspend(*r)),
        );
        events.extend(ResumeReason::ALL.iter().map(|r| LifecycleEvent::Resume(*r)));
        events.extend(DeleteReason::ALL.iter().map(|r| LifecycleEvent::Delete(*r)));
        events.extend([
            LifecycleEvent::UpdateMetadata,
            LifecycleEvent::CardLost,
            LifecycleEvent::CardStolen,
            LifecycleEvent::CardFound,
            LifecycleEvent::CardReissued,
            LifecycleEvent::CardClosed,
            LifecycleEvent::DeviceLost,
            LifecycleEvent::DeviceFound,
            LifecycleEvent::DeviceWiped,
            LifecycleEvent::AccountSignedOut,
            LifecycleEvent::DeviceUnlockRemoved,
        ]);
        events
    }

    /// A short name, as in history records and docs/token-lifecycle.md.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleEvent::Activate => "activate",
            LifecycleEvent::Suspend(_) => "suspend",
            LifecycleEvent::Resume(_) => "resume",
            LifecycleEvent::Delete(_) => "delete",
            LifecycleEvent::UpdateMetadata => "update_metadata",
            LifecycleEvent::CardLost => "card_lost",
            LifecycleEvent::CardStolen => "card_stolen",
            LifecycleEvent::CardFound => "card_found",
            LifecycleEvent::CardReissued => "card_reissued",
            LifecycleEvent::CardClosed => "card_closed",
            LifecycleEvent::DeviceLost => "device_lost",
            LifecycleEvent::DeviceFound => "device_found",
            LifecycleEvent::DeviceWiped => "device_wiped",
            LifecycleEvent::AccountSignedOut => "account_signed_out",
            LifecycleEvent::DeviceUnlockRemoved => "device_unlock_removed",
        }
    }

    /// The reason recorded with the change, if the event carries one.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            LifecycleEvent::Suspend(reason) => Some(reason.as_str()),
            LifecycleEvent::Resume(reason) => Some(reason.as_str()),
            LifecycleEvent::Delete(reason) => Some(reason.as_str()),
            LifecycleEvent::CardLost => Some("LOST"),
            LifecycleEvent::CardStolen => Some("STOLEN"),
            LifecycleEvent::CardFound | LifecycleEvent::DeviceFound => Some("FOUND"),
            LifecycleEvent::CardClosed => Some("ACCOUNT_CLOSED"),
            LifecycleEvent::DeviceLost => Some("LOST"),
            LifecycleEvent::DeviceWiped => Some("DEVICE_WIPED"),
            LifecycleEvent::AccountSignedOut => Some("ACCOUNT_SIGNED_OUT"),
            LifecycleEvent::DeviceUnlockRemoved => Some("DEVICE_UNLOCK_REMOVED"),
            LifecycleEvent::Activate
            | LifecycleEvent::UpdateMetadata
            | LifecycleEvent::CardReissued => None,
        }
    }

    /// The channels allowed to cause this event at all.
    pub fn permitted_channels(self) -> &'static [Channel] {
        match self {
            LifecycleEvent::Activate => &[Channel::Network, Channel::Issuer],
            LifecycleEvent::Suspend(_) | LifecycleEvent::Resume(_) => {
                &[Channel::Wallet, Channel::Issuer]
            }
            LifecycleEvent::Delete(_) => &[Channel::Wallet, Channel::Issuer, Channel::Network],
            LifecycleEvent::UpdateMetadata => &[Channel::Issuer, Channel::Network],
            LifecycleEvent::CardLost
            | LifecycleEvent::CardStolen
            | LifecycleEvent::CardFound
            | LifecycleEvent::CardReissued
            | LifecycleEvent::CardClosed => &[Channel::Issuer],
            LifecycleEvent::DeviceLost
            | LifecycleEvent::DeviceFound
            | LifecycleEvent::DeviceWiped
            | LifecycleEvent::AccountSignedOut
            | LifecycleEvent::DeviceUnlockRemoved => &[Channel::Wallet],
        }
    }
}

/// The holds a channel's plain resume may lift: the wallet lifts its own suspension; the
/// bank lifts its own and the cardholder's. Lost/stolen cards and lost devices have their own
/// "found" events.
pub fn liftable_by_resume(channel: Channel) -> &'static [Hold] {
    match channel {
        Channel::Wallet => &[Hold::Wallet],
        Channel::Issuer => &[Hold::Wallet, Hold::Issuer],
        Channel::Network => &[],
    }
}

/// A token's lifecycle state. Its status is derived, never stored apart from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenState {
    pub activated: bool,
    pub deleted: bool,
    pub holds: Holds,
    /// The reason of the most recent explicit suspension while any hold remains.
    pub suspend_reason: Option<SuspendReason>,
}

impl TokenState {
    /// A new token: pending until ID&V completes, or active at once (green path).
    pub fn new(activated: bool) -> Self {
        Self {
            activated,
            deleted: false,
            holds: Holds::NONE,
            suspend_reason: None,
        }
    }

    pub fn status(&self) -> TokenStatus {
        if self.deleted {
            TokenStatus::Deleted
        } else if !self.activated {
            TokenStatus::Pending
        } else if !self.holds.is_empty() {
            TokenStatus::Suspended
        } else {
            TokenStatus::Active
        }
    }

    /// Not deleted: counts for the one-token-per-card-per-device and default-card rules.
    pub fn is_live(&self) -> bool {
        !self.deleted
    }

    /// Suspended in a way not expected to be lifted (theft, fraud): the device's default
    /// card moves elsewhere.
    pub fn is_permanently_suspended(&self) -> bool {
        !self.deleted
            && (self.holds.contains(Hold::CardStolen)
                || self.suspend_reason.is_some_and(SuspendReason::is_permanent))
    }
}

/// What an event did, for history and notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The status changed (TOKEN_STATUS_UPDATED).
    Status { from: TokenStatus, to: TokenStatus },
    /// Still suspended, but for a different set of reasons (recorded, not notified).
    Holds,
    /// The token now maps to the reissued card (PAN_UPDATED).
    Remapped,
    /// New metadata (METADATA_UPDATED).
    Metadata,
    /// Nothing to do: already in the state the event asks for.
    Unchanged,
}

/// Why an event is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("the token is deleted")]
    Deleted,
    #[error("the {channel} channel may not {action} a token")]
    ChannelNotPermitted {
        channel: Channel,
        action: &'static str,
    },
    #[error("{}", held_message(*hold))]
    HeldByOther { hold: Hold },
    #[error("a pending token cannot be {action}; complete or abandon its activation first")]
    Pending { action: &'static str },
    #[error("the token is already active")]
    AlreadyActive,
}

/// Why a resume is refused: whose suspension it is and what lifts it.
fn held_message(hold: Hold) -> &'static str {
    match hold {
        Hold::Wallet => {
            "the token was suspended by the cardholder; only the wallet or the bank can resume it"
        }
        Hold::Issuer => "the token was suspended by the bank; only the bank can resume it",
        Hold::CardLost => {
            "the token is suspended because the bank reported the card lost; it resumes when the bank reports the card found"
        }
        Hold::CardStolen => {
            "the token is suspended because the bank reported the card stolen; it resumes when the bank reports the card found"
        }
        Hold::DeviceLost => {
            "the token is suspended because the device was reported lost; it resumes when the device is reported found"
        }
    }
}

/// Applies `event` from `channel` to a token in `state`: the new state and what changed, or
/// why the event is refused. Pure: no clock, no storage.
pub fn apply(
    state: TokenState,
    event: LifecycleEvent,
    channel: Channel,
) -> Result<(TokenState, Effect), LifecycleError> {
    if !event.permitted_channels().contains(&channel) {
        return Err(LifecycleError::ChannelNotPermitted {
            channel,
            action: event.name(),
        });
    }
    if state.deleted {
        return Err(LifecycleError::Deleted);
    }
    let before = state.status();
    let mut next = state;
    match event {
        LifecycleEvent::Activate => {
            if state.activated {
                return Err(LifecycleError::AlreadyActive);
            }
            next.activated = true;
        }
        LifecycleEvent::Suspend(reason) => {
            if !state.activated {
                return Err(LifecycleError::Pending {
                    action: "suspended",
                });
            }
            let hold = if channel == Channel::Issuer {
                Hold::Issuer
            } else {
                Hold::Wallet
            };
            next.holds = state.holds.with(hold);
            next.suspend_reason = Some(reason);
        }
        LifecycleEvent::Resume(_) => {
            if state.holds.is_empty() {
                return Ok((state, Effect::Unchanged));
            }
            let liftable = liftable_by_resume(channel);
            let mut holds = state.holds;
            for hold in liftable {
                holds = holds.without(*hold);
            }
            if holds == state.holds {
                // Nothing this channel may lift: say whose suspension it is.
                let hold = state.holds.iter().next().unwrap_or(Hold::Issuer);
                return Err(LifecycleError::HeldByOther { hold });
            }
            next.holds = holds;
        }
        LifecycleEvent::Delete(_)
        | LifecycleEvent::CardClosed
        | LifecycleEvent::DeviceWiped
        | LifecycleEvent::AccountSignedOut
        | LifecycleEvent::DeviceUnlockRemoved => {
            next.deleted = true;
            next.holds = Holds::NONE;
            next.suspend_reason = None;
        }
        LifecycleEvent::UpdateMetadata => return Ok((state, Effect::Metadata)),
        LifecycleEvent::CardReissued => return Ok((state, Effect::Remapped)),
        LifecycleEvent::CardLost => next.holds = state.holds.with(Hold::CardLost),
        LifecycleEvent::CardStolen => next.holds = state.holds.with(Hold::CardStolen),
        LifecycleEvent::CardFound => {
            next.holds = state
                .holds
                .without(Hold::CardLost)
                .without(Hold::CardStolen)
        }
        LifecycleEvent::DeviceLost => next.holds = state.holds.with(Hold::DeviceLost),
        LifecycleEvent::DeviceFound => next.holds = state.holds.without(Hold::DeviceLost),
    }
    if next.holds.is_empty() {
        next.suspend_reason = None;
    }
    let after = next.status();
    let effect = if after != before {
        Effect::Status {
            from: before,
            to: after,
        }
    } else if next != state {
        Effect::Holds
    } else {
        Effect::Unchanged
    };
    Ok((next, effect))
}

/// The rules as a Markdown table, one row per event: who may cause it and what it does to
/// an active token. docs/token-lifecycle.md embeds this table verbatim (a test checks it).
pub fn rules_table() -> String {
    let mut out = String::from(
        "| Event | Wallet | Issuer | Network | From active | Notes |\n|---|---|---|---|---|---|\n",
    );
    let mut seen = std::collections::HashSet::new();
    for event in LifecycleEvent::all() {
        if !seen.insert(event.name()) {
            continue;
        }
        let cell = |channel: Channel| {
            if event.permitted_channels().contains(&channel) {
                "yes"
            } else {
                "—"
            }
        };
        let from_active = Channel::ALL
            .into_iter()
            .find_map(|channel| apply(TokenState::new(true), event, channel).ok())
            .map_or("refused".to_owned(), |(next, effect)| match effect {
                Effect::Status { to, .. } => format!("→ {to}"),
                Effect::Holds => format!("{} (holds change)", next.status()),
                Effect::Remapped => "active, remapped to the new card".to_owned(),
                Effect::Metadata => "active, metadata updated".to_owned(),
                Effect::Unchanged => "unchanged".to_owned(),
            });
        let notes = match event {
            LifecycleEvent::Activate => {
                "pending → active (or suspended, if a hold arrived while pending)"
            }
            LifecycleEvent::Suspend(_) => {
                "adds the `wallet` hold (wallet) or the `issuer` hold (bank); refused on a pending token"
            }
            LifecycleEvent::Resume(_) => {
                "wallet lifts `wallet`; bank lifts `wallet` and `issuer`; other holds refuse it"
            }
            LifecycleEvent::Delete(_) => "final",
            LifecycleEvent::UpdateMetadata => "METADATA_UPDATED",
            LifecycleEvent::CardLost => "adds `card_lost` to every live token of the card",
            LifecycleEvent::CardStolen => "adds `card_stolen`; permanent: the device default moves",
            LifecycleEvent::CardFound => "lifts `card_lost` and `card_stolen` only",
            LifecycleEvent::CardReissued => {
                "tokens keep their numbers and map to the new card (PAN_UPDATED)"
            }
            LifecycleEvent::CardClosed => "deletes every token of the card",
            LifecycleEvent::DeviceLost => "adds `device_lost` to every live token on the device",
            LifecycleEvent::DeviceFound => "lifts `device_lost` only",
            LifecycleEvent::DeviceWiped => "deletes every token on the device",
            LifecycleEvent::AccountSignedOut => "deletes every token on the device",
            LifecycleEvent::DeviceUnlockRemoved => {
                "deletes every token on the device (the Apple Pay rule)"
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            event.name(),
            cell(Channel::Wallet),
            cell(Channel::Issuer),
            cell(Channel::Network),
            from_active,
            notes
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_page_embeds_the_rules_table() {
        let page = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/token-lifecycle.md"
        ))
        .unwrap_or_default();
        assert!(
            page.contains(&rules_table()),
            "docs/token-lifecycle.md is out of date; paste:\n{}",
            rules_table()
        );
    }

    fn all_states() -> Vec<TokenState> {
        let mut states = Vec::new();
        for activated in [false, true] {
            for deleted in [false, true] {
                for bits in 0u8..32 {
                    for suspend_reason in
                        [None, Some(SuspendReason::Lost), Some(SuspendReason::Stolen)]
                    {
                        let holds = Holds::from_bits(bits).unwrap();
                        // Only reachable states: no holds and no reason on deleted tokens,
                        // a reason only with a wallet or issuer hold.
                        if deleted && (bits != 0 || suspend_reason.is_some()) {
                            continue;
                        }
                        if suspend_reason.is_some()
                            && !(holds.contains(Hold::Wallet) || holds.contains(Hold::Issuer))
                        {
                            continue;
                        }
                        states.push(TokenState {
                            activated,
                            deleted,
                            holds,
                            suspend_reason,
                        });
                    }
                }
            }
        }
        states
    }

    /// Every (state, event, channel): the invariants that must hold whatever happens.
    #[test]
    fn every_combination_keeps_the_invariants() {
        let mut checked = 0;
        for state in all_states() {
            for event in LifecycleEvent::all() {
                for channel in Channel::ALL {
                    checked += 1;
                    let result = apply(state, event, channel);
                    let permitted = event.permitted_channels().contains(&channel);
                    match result {
                        Err(LifecycleError::ChannelNotPermitted { .. }) => assert!(!permitted),
                        Err(LifecycleError::Deleted) => assert!(state.deleted && permitted),
                        Err(_) => assert!(permitted && !state.deleted),
                        Ok((next, effect)) => {
                            assert!(permitted, "{event:?} by {channel} must be refused");
                            assert!(!state.deleted, "nothing happens to a deleted token");
                            // Activation never goes backwards; deletion is final.
                            assert!(next.activated >= state.activated);
                            if next.deleted {
                                assert!(next.holds.is_empty() && next.suspend_reason.is_none());
                            }
                            if next.holds.is_empty() {
                                assert!(next.suspend_reason.is_none());
                            }
                            // A hold is lifted only by the event or channel that may lift it.
                            for hold in state.holds.iter() {
                                if !next.holds.contains(hold) && !next.deleted {
                                    let allowed = match hold {
                                        Hold::Wallet => matches!(event, LifecycleEvent::Resume(_)),
                                        Hold::Issuer => {
                                            matches!(event, LifecycleEvent::Resume(_))
                                                && channel == Channel::Issuer
                                        }
                                        Hold::CardLost | Hold::CardStolen => {
                                            event == LifecycleEvent::CardFound
                                        }
                                        Hold::DeviceLost => event == LifecycleEvent::DeviceFound,
                                    };
                                    assert!(allowed, "{hold:?} lifted by {event:?} from {channel}");
                                }
                            }
                            match effect {
                                Effect::Status { from, to } => {
                                    assert_eq!((from, to), (state.status(), next.status()));
                                    assert_ne!(from, to);
                                }
                                Effect::Unchanged | Effect::Metadata | Effect::Remapped => {
                                    assert_eq!(next, state)
                                }
                                Effect::Holds => {
                                    assert_eq!(next.status(), state.status());
                                    assert_ne!(next, state);
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 5000, "{checked}");
    }

    fn active() -> TokenState {
        TokenState::new(true)
    }

    #[test]
    fn wallet_cannot_resume_what_the_bank_suspended() {
        let (suspended, effect) = apply(
            active(),
            LifecycleEvent::Suspend(SuspendReason::Fraudulent),
            Channel::Issuer,
        )
        .unwrap();
        assert_eq!(
            effect,
            Effect::Status {
                from: TokenStatus::Active,
                to: TokenStatus::Suspended
            }
        );
        let refused = apply(
            suspended,
            LifecycleEvent::Resume(ResumeReason::Other),
            Channel::Wallet,
        )
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the token was suspended by the bank; only the bank can resume it"
        );
        let (resumed, _) = apply(
            suspended,
            LifecycleEvent::Resume(ResumeReason::FraudCleared),
            Channel::Issuer,
        )
        .unwrap();
        assert_eq!(resumed.status(), TokenStatus::Active);
    }

    #[test]
    fn the_bank_can_resume_the_cardholders_suspension() {
        let (suspended, _) = apply(
            active(),
            LifecycleEvent::Suspend(SuspendReason::Lost),
            Channel::Wallet,
        )
        .unwrap();
        let (resumed, _) = apply(
            suspended,
            LifecycleEvent::Resume(ResumeReason::Found),
            Channel::Issuer,
        )
        .unwrap();
        assert_eq!(resumed.status(), TokenStatus::Active);
    }

    #[test]
    fn device_found_resumes_only_what_device_lost_suspended() {
        let (a, _) = apply(active(), LifecycleEvent::DeviceLost, Channel::Wallet).unwrap();
        let (a, effect) = apply(a, LifecycleEvent::DeviceFound, Channel::Wallet).unwrap();
        assert_eq!(
            (a.status(), effect),
            (
                TokenStatus::Active,
                Effect::Status {
                    from: TokenStatus::Suspended,
                    to: TokenStatus::Active
                }
            )
        );

        // Suspended by the bank before the device was lost: still suspended after it is found.
        let (b, _) = apply(
            active(),
            LifecycleEvent::Suspend(SuspendReason::Other),
            Channel::Issuer,
        )
        .unwrap();
        let (b, _) = apply(b, LifecycleEvent::DeviceLost, Channel::Wallet).unwrap();
        let (b, effect) = apply(b, LifecycleEvent::DeviceFound, Channel::Wallet).unwrap();
        assert_eq!(
            (b.status(), effect),
            (TokenStatus::Suspended, Effect::Holds)
        );
    }

    #[test]
    fn card_events_and_pending_tokens() {
        let pending = TokenState::new(false);
        let (lost, _) = apply(pending, LifecycleEvent::CardLost, Channel::Issuer).unwrap();
        assert_eq!(lost.status(), TokenStatus::Pending);
        // Activated while the card is lost: suspended until the card is found.
        let (activated, _) = apply(lost, LifecycleEvent::Activate, Channel::Network).unwrap();
        assert_eq!(activated.status(), TokenStatus::Suspended);
        let (found, _) = apply(activated, LifecycleEvent::CardFound, Channel::Issuer).unwrap();
        assert_eq!(found.status(), TokenStatus::Active);
        assert_eq!(
            apply(
                pending,
                LifecycleEvent::Suspend(SuspendReason::Other),
                Channel::Wallet
            ),
            Err(LifecycleError::Pending {
                action: "suspended"
            })
        );
        assert_eq!(
            apply(found, LifecycleEvent::CardReissued, Channel::Issuer),
            Ok((found, Effect::Remapped))
        );
        let (closed, effect) = apply(found, LifecycleEvent::CardClosed, Channel::Issuer).unwrap();
        assert_eq!(
            (closed.status(), effect),
            (
                TokenStatus::Deleted,
                Effect::Status {
                    from: TokenStatus::Active,
                    to: TokenStatus::Deleted
                }
            )
        );
        assert_eq!(
            apply(
                closed,
                LifecycleEvent::Resume(ResumeReason::Other),
                Channel::Issuer
            ),
            Err(LifecycleError::Deleted)
        );
    }

    #[test]
    fn channels_are_enforced() {
        assert!(matches!(
            apply(active(), LifecycleEvent::CardLost, Channel::Wallet),
            Err(LifecycleError::ChannelNotPermitted { .. })
        ));
        assert!(matches!(
            apply(active(), LifecycleEvent::DeviceLost, Channel::Issuer),
            Err(LifecycleError::ChannelNotPermitted { .. })
        ));
        assert!(matches!(
            apply(
                TokenState::new(false),
                LifecycleEvent::Activate,
                Channel::Wallet
            ),
            Err(LifecycleError::ChannelNotPermitted { .. })
        ));
        assert_eq!(
            apply(
                active(),
                LifecycleEvent::Resume(ResumeReason::Other),
                Channel::Wallet
            ),
            Ok((active(), Effect::Unchanged))
        );
    }

    #[test]
    fn theft_is_a_permanent_suspension() {
        let (stolen, _) = apply(active(), LifecycleEvent::CardStolen, Channel::Issuer).unwrap();
        assert!(stolen.is_permanently_suspended());
        let (fraud, _) = apply(
            active(),
            LifecycleEvent::Suspend(SuspendReason::Fraudulent),
            Channel::Issuer,
        )
        .unwrap();
        assert!(fraud.is_permanently_suspended());
        let (lost, _) = apply(
            active(),
            LifecycleEvent::Suspend(SuspendReason::Lost),
            Channel::Wallet,
        )
        .unwrap();
        assert!(!lost.is_permanently_suspended());
    }
}
