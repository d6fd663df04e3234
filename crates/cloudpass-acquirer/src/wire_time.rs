//! The times a message carries, from the injected clock (UTC): field 7 (MMDDhhmmss), field
//! 12 (hhmmss), field 13 (MMDD) and the EMV transaction date (YYMMDD in BCD, tag 9A).

/// The times of one instant, as fields carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireTimes {
    pub transmission: String,
    pub local_time: String,
    pub local_date: String,
    pub emv_date: [u8; 3],
}

/// The wire times of a millisecond timestamp.
pub(crate) fn wire_times(millis: i64) -> WireTimes {
    let seconds = millis.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = cloudpass_core::clock::civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, (of_day / 60) % 60, of_day % 60);
    let bcd = |n: i64| {
        let n = u8::try_from(n.rem_euclid(100)).unwrap_or(0);
        ((n / 10) << 4) | (n % 10)
    };
    WireTimes {
        transmission: format!("{month:02}{day:02}{hour:02}{minute:02}{second:02}"),
        local_time: format!("{hour:02}{minute:02}{second:02}"),
        local_date: format!("{month:02}{day:02}"),
        emv_date: [bcd(year), bcd(i64::from(month)), bcd(i64::from(day))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_instant() {
        // 2026-12-02T06:30:05Z
        let times = wire_times(1_796_193_005_000);
        assert_eq!(times.transmission, "1202063005");
        assert_eq!(times.local_time, "063005");
        assert_eq!(times.local_date, "1202");
        assert_eq!(times.emv_date, [0x26, 0x12, 0x02]);
    }
}
