//! What the switch counts for operators, rendered in Prometheus's text format: every answer
//! by its MTI, response code (field 39) and channel (from field 22), and how long answers
//! took. Nothing here holds a card or token number: labels are MTIs, two-character codes and
//! a fixed set of channel names.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloudpass_iso8583::Message;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a message reached the terminal, from its POS entry mode (field 22).
fn channel(request: &Message<'_>) -> &'static str {
    match request
        .get_str(22)
        .map(|mode| mode.get(..2).unwrap_or(mode))
    {
        Some("07" | "91" | "98") => "contactless",
        Some("01") => "keyed",
        Some("05") => "chip",
        Some(_) => "other",
        None => "none",
    }
}

/// The first `N` bytes of `value` as a label may hold them: what is not a letter or digit
/// becomes `_`, and a short value is padded with `_` (an MTI is 4, a code 2). No allocation:
/// this runs for every message.
fn label<const N: usize>(value: &str) -> [u8; N] {
    let mut out = [b'_'; N];
    for (slot, byte) in out.iter_mut().zip(value.bytes()) {
        if byte.is_ascii_alphanumeric() {
            *slot = byte;
        }
    }
    out
}

fn text(label: &[u8]) -> &str {
    std::str::from_utf8(label).unwrap_or("_")
}

/// An answer's MTI, response code and the request's channel.
type AnswerKey = ([u8; 4], [u8; 2], &'static str);

#[derive(Default)]
pub struct SwitchMetrics {
    answers: Mutex<BTreeMap<AnswerKey, u64>>,
    /// Cumulative counts per bucket, then the sum in microseconds and the count.
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl SwitchMetrics {
    /// Counts the answer to `request` and how long it took.
    pub(crate) fn record(&self, request: &Message<'_>, response: &Message<'_>, took: Duration) {
        let key = (
            label::<4>(response.mti().as_str()),
            label::<2>(response.get_str(39).unwrap_or("")),
            channel(request),
        );
        *self
            .answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the switch's metrics to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP cloudpass_switch_answers_total Messages the switch answered, by the answer's MTI, response code (field 39) and the request's channel (field 22).\n");
        out.push_str("# TYPE cloudpass_switch_answers_total counter\n");
        let answers = self
            .answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for ((mti, code, channel), count) in answers {
            let _ = writeln!(
                out,
                "cloudpass_switch_answers_total{{mti=\"{}\",code=\"{}\",channel=\"{channel}\"}} {count}",
                text(&mti),
                text(&code)
            );
        }
        out.push_str("# HELP cloudpass_switch_answer_seconds Time from a message's arrival at the switch to its answer.\n");
        out.push_str("# TYPE cloudpass_switch_answer_seconds histogram\n");
        let count = self.count.load(Ordering::Relaxed);
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "cloudpass_switch_answer_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "cloudpass_switch_answer_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        let _ = writeln!(out, "cloudpass_switch_answer_seconds_sum {sum}");
        let _ = writeln!(out, "cloudpass_switch_answer_seconds_count {count}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cloudpass_iso8583::Mti;

    fn message(mti: Mti, fields: &[(u8, &str)]) -> Message<'static> {
        let mut message = Message::new(mti);
        for (field, value) in fields {
            message.set_text(*field, value.to_string());
        }
        message
    }

    #[test]
    fn answers_are_counted_by_mti_code_and_channel_and_timed() {
        let metrics = SwitchMetrics::default();
        let tap = message(Mti::FINANCIAL_REQUEST, &[(22, "072")]);
        let approved = message(Mti::FINANCIAL_RESPONSE, &[(39, "00")]);
        let declined = message(Mti::FINANCIAL_RESPONSE, &[(39, "51")]);
        metrics.record(&tap, &approved, Duration::from_millis(3));
        metrics.record(&tap, &approved, Duration::from_millis(30));
        metrics.record(
            &message(Mti::FINANCIAL_REQUEST, &[(22, "012")]),
            &declined,
            Duration::from_secs(20),
        );
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("cloudpass_switch_answers_total{mti=\"0210\",code=\"00\",channel=\"contactless\"} 2\n"), "{out}");
        assert!(
            out.contains(
                "cloudpass_switch_answers_total{mti=\"0210\",code=\"51\",channel=\"keyed\"} 1\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("cloudpass_switch_answer_seconds_bucket{le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("cloudpass_switch_answer_seconds_bucket{le=\"0.05\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("cloudpass_switch_answer_seconds_bucket{le=\"10\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("cloudpass_switch_answer_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("cloudpass_switch_answer_seconds_count 3\n"),
            "{out}"
        );
    }
}
