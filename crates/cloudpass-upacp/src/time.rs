//! UPACP's times: `txnTime`, `payTimeout` and friends are `yyyyMMddHHmmss` in Beijing time
//! (UTC+8, no daylight saving); `settleDate` is `MMDD`; `traceTime` is `MMddHHmmss`.

use cloudpass_core::clock::{civil_from_days, days_from_civil};

const BEIJING_OFFSET_SECONDS: i64 = 8 * 3_600;

/// Unix seconds of a `yyyyMMddHHmmss` Beijing time, or `None` when it is not a real moment.
pub fn parse_beijing(text: &str) -> Option<i64> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(8..10)?, number(10..12)?, number(12..14)?);
    let month = u8::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    let day = u8::try_from(day).ok().filter(|d| (1..=31).contains(d))?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // 31 February and friends do not come back as themselves.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second - BEIJING_OFFSET_SECONDS)
}

/// The `yyyyMMddHHmmss` Beijing time of a moment.
pub fn format_beijing(unix_seconds: i64) -> String {
    let local = unix_seconds + BEIJING_OFFSET_SECONDS;
    let (year, month, day) = civil_from_days(local.div_euclid(86_400));
    let second_of_day = local.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_times_round_trip_and_refuse_impossible_dates() {
        // 2026-12-02T00:00:00Z is 08:00 in Beijing.
        assert_eq!(parse_beijing("20261202080000"), Some(1_796_169_600));
        assert_eq!(format_beijing(1_796_169_600), "20261202080000");
        assert_eq!(
            format_beijing(1_796_169_600 - 8 * 3_600 - 1),
            "20261201235959"
        );
        for bad in [
            "20260231120000",
            "20261302000000",
            "2026120208000",
            "2026120208000x",
            "20261202240000",
        ] {
            assert_eq!(parse_beijing(bad), None, "{bad}");
        }
    }
}
