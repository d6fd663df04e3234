//! Devices that hold device cards: what kind they are, what state they are in, and whether
//! they may receive a new card.

use std::fmt;

/// The kind of device a token lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A phone with an embedded secure element (Apple, Huawei, Xiaomi, Samsung Pay):
    /// holds a device-unique EMV key.
    HandsetSe,
    /// A watch or band with a secure element.
    Wearable,
    /// Host card emulation in a bank or wallet app: holds limited-use keys, replenished.
    Hce,
    /// A SIM-card secure element: retired, existing cards keep working, no new cards.
    SimSe,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 4] = [
        DeviceKind::HandsetSe,
        DeviceKind::Wearable,
        DeviceKind::Hce,
        DeviceKind::SimSe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::HandsetSe => "handset_se",
            DeviceKind::Wearable => "wearable",
            DeviceKind::Hce => "hce",
            DeviceKind::SimSe => "sim_se",
        }
    }

    pub fn parse(text: &str) -> Option<DeviceKind> {
        DeviceKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// SIM-SE is retired: refused for new cards.
    pub fn accepts_new_cards(self) -> bool {
        self != DeviceKind::SimSe
    }

    /// Whether the device keeps a long-lived key in a secure element (else: limited-use keys).
    pub fn has_secure_element(self) -> bool {
        self != DeviceKind::Hce
    }

    /// Two letters for field 63 `TK` tag 10.
    pub fn wire_code(self) -> &'static str {
        match self {
            DeviceKind::HandsetSe | DeviceKind::SimSe => "SE",
            DeviceKind::Wearable => "WR",
            DeviceKind::Hce => "HC",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceState {
    Active,
    /// Reported lost: its tokens are suspended.
    Lost,
    /// Erased: its tokens are deleted; no new cards until it is restored.
    Wiped,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Active => "active",
            DeviceState::Lost => "lost",
            DeviceState::Wiped => "wiped",
        }
    }

    pub fn parse(text: &str) -> Option<DeviceState> {
        [DeviceState::Active, DeviceState::Lost, DeviceState::Wiped]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Something that happens to a device, reported by the wallet or handset maker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    Lost,
    Found,
    Wiped,
    Restored,
    /// The wallet account signed out: its cards leave the device.
    SignedOut,
    /// An account signed in.
    SignedIn,
    /// Passcode or fingerprint removed: the cards leave the device (the Apple Pay rule).
    UnlockRemoved,
    /// Passcode set again.
    UnlockSet,
}

impl DeviceEvent {
    pub const ALL: [DeviceEvent; 8] = [
        DeviceEvent::Lost,
        DeviceEvent::Found,
        DeviceEvent::Wiped,
        DeviceEvent::Restored,
        DeviceEvent::SignedOut,
        DeviceEvent::SignedIn,
        DeviceEvent::UnlockRemoved,
        DeviceEvent::UnlockSet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceEvent::Lost => "lost",
            DeviceEvent::Found => "found",
            DeviceEvent::Wiped => "wiped",
            DeviceEvent::Restored => "restored",
            DeviceEvent::SignedOut => "signed_out",
            DeviceEvent::SignedIn => "signed_in",
            DeviceEvent::UnlockRemoved => "unlock_removed",
            DeviceEvent::UnlockSet => "unlock_set",
        }
    }

    pub fn parse(text: &str) -> Option<DeviceEvent> {
        DeviceEvent::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// What a device looks like to the rules: its state, whether an account is signed in and
/// whether a passcode or biometric protects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCondition {
    pub state: DeviceState,
    pub signed_in: bool,
    pub unlock_set: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("the device is {0}; it must be found or restored first")]
    NotActive(&'static str),
    #[error("the device is not lost")]
    NotLost,
    #[error("the device is not wiped")]
    NotWiped,
    #[error("no wallet account is signed in on the device")]
    NotSignedIn,
    #[error("the device has no passcode or biometric; set one to add cards")]
    NoUnlock,
    #[error("SIM secure elements are retired and take no new cards")]
    Retired,
}

/// The device's new condition after `event`, and the token event it implies for every
/// live token on the device (if any).
pub fn apply_device_event(
    condition: DeviceCondition,
    event: DeviceEvent,
) -> Result<(DeviceCondition, Option<crate::lifecycle::LifecycleEvent>), DeviceError> {
    use crate::lifecycle::LifecycleEvent as Token;
    let mut next = condition;
    let token_event = match event {
        DeviceEvent::Lost => {
            if condition.state != DeviceState::Active {
                return Err(DeviceError::NotActive(condition.state.as_str()));
            }
            next.state = DeviceState::Lost;
            Some(Token::DeviceLost)
        }
        DeviceEvent::Found => {
            if condition.state != DeviceState::Lost {
                return Err(DeviceError::NotLost);
            }
            next.state = DeviceState::Active;
            Some(Token::DeviceFound)
        }
        DeviceEvent::Wiped => {
            if condition.state == DeviceState::Wiped {
                return Err(DeviceError::NotActive("wiped"));
            }
            next.state = DeviceState::Wiped;
            next.signed_in = false;
            Some(Token::DeviceWiped)
        }
        DeviceEvent::Restored => {
            if condition.state != DeviceState::Wiped {
                return Err(DeviceError::NotWiped);
            }
            next.state = DeviceState::Active;
            None
        }
        DeviceEvent::SignedOut => {
            next.signed_in = false;
            Some(Token::AccountSignedOut)
        }
        DeviceEvent::SignedIn => {
            next.signed_in = true;
            None
        }
        DeviceEvent::UnlockRemoved => {
            next.unlock_set = false;
            Some(Token::DeviceUnlockRemoved)
        }
        DeviceEvent::UnlockSet => {
            next.unlock_set = true;
            None
        }
    };
    Ok((next, token_event))
}

/// Whether a new card may be loaded onto a device.
pub fn may_receive_card(kind: DeviceKind, condition: DeviceCondition) -> Result<(), DeviceError> {
    if !kind.accepts_new_cards() {
        return Err(DeviceError::Retired);
    }
    if condition.state != DeviceState::Active {
        return Err(DeviceError::NotActive(condition.state.as_str()));
    }
    if !condition.signed_in {
        return Err(DeviceError::NotSignedIn);
    }
    if !condition.unlock_set {
        return Err(DeviceError::NoUnlock);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::LifecycleEvent;

    const READY: DeviceCondition = DeviceCondition {
        state: DeviceState::Active,
        signed_in: true,
        unlock_set: true,
    };

    #[test]
    fn lost_found_wiped_restored() {
        let (lost, event) = apply_device_event(READY, DeviceEvent::Lost).unwrap();
        assert_eq!(
            (lost.state, event),
            (DeviceState::Lost, Some(LifecycleEvent::DeviceLost))
        );
        assert_eq!(
            may_receive_card(DeviceKind::HandsetSe, lost),
            Err(DeviceError::NotActive("lost"))
        );
        assert_eq!(
            apply_device_event(lost, DeviceEvent::Lost),
            Err(DeviceError::NotActive("lost"))
        );
        let (found, event) = apply_device_event(lost, DeviceEvent::Found).unwrap();
        assert_eq!(
            (found.state, event),
            (DeviceState::Active, Some(LifecycleEvent::DeviceFound))
        );
        let (wiped, event) = apply_device_event(found, DeviceEvent::Wiped).unwrap();
        assert_eq!(
            (wiped.state, event),
            (DeviceState::Wiped, Some(LifecycleEvent::DeviceWiped))
        );
        assert_eq!(
            may_receive_card(DeviceKind::HandsetSe, wiped),
            Err(DeviceError::NotActive("wiped"))
        );
        let (restored, event) = apply_device_event(wiped, DeviceEvent::Restored).unwrap();
        assert_eq!((restored.state, event), (DeviceState::Active, None));
        // Wiping signs the account out; it must sign in again.
        assert_eq!(
            may_receive_card(DeviceKind::HandsetSe, restored),
            Err(DeviceError::NotSignedIn)
        );
        let (ready, _) = apply_device_event(restored, DeviceEvent::SignedIn).unwrap();
        assert_eq!(may_receive_card(DeviceKind::HandsetSe, ready), Ok(()));
        assert_eq!(
            apply_device_event(READY, DeviceEvent::Found),
            Err(DeviceError::NotLost)
        );
        assert_eq!(
            apply_device_event(READY, DeviceEvent::Restored),
            Err(DeviceError::NotWiped)
        );
    }

    #[test]
    fn account_and_unlock_rules() {
        let (out, event) = apply_device_event(READY, DeviceEvent::SignedOut).unwrap();
        assert_eq!(event, Some(LifecycleEvent::AccountSignedOut));
        assert_eq!(
            may_receive_card(DeviceKind::Hce, out),
            Err(DeviceError::NotSignedIn)
        );
        let (unlocked, event) = apply_device_event(READY, DeviceEvent::UnlockRemoved).unwrap();
        assert_eq!(event, Some(LifecycleEvent::DeviceUnlockRemoved));
        assert_eq!(
            may_receive_card(DeviceKind::Wearable, unlocked),
            Err(DeviceError::NoUnlock)
        );
        assert_eq!(
            may_receive_card(DeviceKind::SimSe, READY),
            Err(DeviceError::Retired)
        );
        for kind in DeviceKind::ALL {
            assert_eq!(DeviceKind::parse(kind.as_str()), Some(kind));
        }
        for event in DeviceEvent::ALL {
            assert_eq!(DeviceEvent::parse(event.as_str()), Some(event));
        }
    }
}
