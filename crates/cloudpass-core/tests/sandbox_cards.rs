//! UnionPay's published test cards (reference/upacp.md §5) as card numbers.
#![allow(clippy::unwrap_used)]

use cloudpass_core::{AccountNumber, CardNumberError, Pan};

#[test]
fn the_published_test_cards_parse_except_one() {
    for number in [
        "6226090000000048",
        "6226388000000095",
        "6216261000000000018",
        "5200831111111113",
    ] {
        let pan = Pan::parse(number).unwrap();
        assert_eq!(pan.expose(), number);
        assert!(!format!("{pan} {pan:?}").contains(number));
    }
    // The published 平安贷记 test card does not pass the Luhn check.
    assert_eq!(Pan::parse("6221558812340000"), Err(CardNumberError::Luhn));
}
