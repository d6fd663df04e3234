//! The payer's identity fields — the holder's name, the phone the bank holds, the ID number —
//! checked against what the card's test data says of its holder, as UnionPay's test
//! environment checks them for its published cards. A field the payer leaves out is not
//! asked for; a field the card's data lacks is not checked; a field given that disagrees
//! stops the payment (UPACP `66`, 身份或手机号错). Nothing given is echoed.

/// What a card's test data says of its holder.
#[derive(Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub phone: String,
    /// The ID card number (certifTp 01), where the data has one.
    pub id_number: Option<String>,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Holder(…)")
    }
}

/// The identity fields a payer gave.
#[derive(Debug, Default, Clone, Copy)]
pub struct GivenIdentity<'a> {
    pub name: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub id_number: Option<&'a str>,
}

/// Whether every field given agrees with the holder's.
pub fn agrees(holder: &Holder, given: GivenIdentity<'_>) -> bool {
    let same = |given: Option<&str>, known: Option<&str>| match (given, known) {
        (Some(given), Some(known)) => given.trim().eq_ignore_ascii_case(known),
        _ => true,
    };
    same(given.name, Some(&holder.name))
        && same(given.phone, Some(&holder.phone))
        && same(given.id_number, holder.id_number.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zhang_san() -> Holder {
        Holder {
            name: "张三".into(),
            phone: "18100000000".into(),
            id_number: Some("510265790128303".into()),
        }
    }

    #[test]
    fn what_is_given_must_agree_and_what_is_left_out_is_not_asked() {
        let holder = zhang_san();
        assert!(agrees(&holder, GivenIdentity::default()));
        assert!(agrees(
            &holder,
            GivenIdentity {
                name: Some("张三"),
                phone: Some(" 18100000000 "),
                id_number: Some("510265790128303"),
            }
        ));
        for wrong in [
            GivenIdentity {
                phone: Some("18100000001"),
                ..Default::default()
            },
            GivenIdentity {
                name: Some("李四"),
                ..Default::default()
            },
            GivenIdentity {
                id_number: Some("510265790128304"),
                ..Default::default()
            },
        ] {
            assert!(!agrees(&holder, wrong), "{wrong:?}");
        }
    }

    #[test]
    fn a_field_the_data_lacks_is_not_checked() {
        let holder = Holder {
            id_number: None,
            ..zhang_san()
        };
        assert!(agrees(
            &holder,
            GivenIdentity {
                id_number: Some("anything"),
                ..Default::default()
            }
        ));
    }
}
