//! The default card of a device: while a device holds any live token, exactly one of them is
//! its default. The first token becomes the default; when the default is deleted or
//! suspended for good (theft, fraud), another takes its place.

use crate::lifecycle::{TokenState, TokenStatus};

/// One of a device's tokens, as the default rule sees it. `order` is the provisioning order
/// (lower = older).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<Id> {
    pub id: Id,
    pub state: TokenState,
    pub is_default: bool,
    pub order: i64,
}

fn rank(state: &TokenState) -> u8 {
    if state.is_permanently_suspended() {
        return 3;
    }
    match state.status() {
        TokenStatus::Active => 0,
        TokenStatus::Suspended => 1,
        TokenStatus::Pending => 2,
        TokenStatus::Deleted => 4,
    }
}

/// Which token should be the device's default, given all of its tokens after a change:
/// the current default if it is live and not permanently suspended; otherwise the best
/// remaining token (active, then temporarily suspended, then pending, then permanently
/// suspended; the oldest first). `None` only when no live token is left.
pub fn choose_default<Id: Copy>(tokens: &[Candidate<Id>]) -> Option<Id> {
    let live = tokens.iter().filter(|t| t.state.is_live());
    if let Some(current) = tokens
        .iter()
        .find(|t| t.is_default && t.state.is_live() && !t.state.is_permanently_suspended())
    {
        return Some(current.id);
    }
    live.min_by_key(|t| (rank(&t.state), t.order)).map(|t| t.id)
}

/// Whether a token may be made the default explicitly: only an active one.
pub fn may_be_made_default(state: &TokenState) -> bool {
    state.status() == TokenStatus::Active
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Channel, LifecycleEvent, SuspendReason, apply};

    fn token(id: u8, order: i64, is_default: bool) -> Candidate<u8> {
        Candidate {
            id,
            state: TokenState::new(true),
            is_default,
            order,
        }
    }

    fn after(candidate: Candidate<u8>, event: LifecycleEvent, channel: Channel) -> Candidate<u8> {
        Candidate {
            state: apply(candidate.state, event, channel).unwrap().0,
            ..candidate
        }
    }

    #[test]
    fn first_token_becomes_default() {
        assert_eq!(choose_default(&[token(1, 0, false)]), Some(1));
        assert_eq!(choose_default::<u8>(&[]), None);
    }

    #[test]
    fn the_default_stays_while_it_is_live() {
        let tokens = [token(1, 0, false), token(2, 1, true)];
        assert_eq!(choose_default(&tokens), Some(2));
        // Temporarily suspended: it stays the default.
        let suspended = after(
            tokens[1],
            LifecycleEvent::Suspend(SuspendReason::Lost),
            Channel::Wallet,
        );
        assert_eq!(choose_default(&[tokens[0], suspended]), Some(2));
    }

    #[test]
    fn deleting_or_stealing_the_default_promotes_another() {
        let tokens = [token(1, 0, true), token(2, 1, false), token(3, 2, false)];
        let deleted = after(
            tokens[0],
            LifecycleEvent::Delete(crate::lifecycle::DeleteReason::ConsumerDeleted),
            Channel::Wallet,
        );
        assert_eq!(choose_default(&[deleted, tokens[1], tokens[2]]), Some(2));

        let stolen = after(tokens[0], LifecycleEvent::CardStolen, Channel::Issuer);
        assert_eq!(choose_default(&[stolen, tokens[1], tokens[2]]), Some(2));

        // Active tokens are preferred over suspended ones, whatever their age.
        let suspended_2 = after(
            tokens[1],
            LifecycleEvent::Suspend(SuspendReason::Lost),
            Channel::Wallet,
        );
        assert_eq!(choose_default(&[deleted, suspended_2, tokens[2]]), Some(3));

        // Only permanently suspended tokens left: one of them is still the default.
        let stolen_2 = after(tokens[1], LifecycleEvent::CardStolen, Channel::Issuer);
        assert_eq!(choose_default(&[deleted, stolen_2]), Some(2));
        // Nothing live: no default.
        assert_eq!(choose_default(&[deleted]), None);
    }
}
