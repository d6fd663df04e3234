//! Any body as a merchant's UPACP request: every typed reading of it (the header, each
//! transaction type, the nested `customerInfo` and `tokenPayData` values, the app's pay
//! result) must not panic, and a refusal must never carry a value it refuses — a card
//! number, an SMS code or a customerInfo blob in a refusal would be shown, logged and stored.
//! Whatever form the fuzzer makes, a card number is planted in one of its fields (or of the
//! fields secrets arrive in), and no refusal may carry any of its digits.
#![no_main]

use cloudpass_upacp::Form;
use cloudpass_upacp::app_result::{PayResult, ResultData};
use cloudpass_upacp::request::{
    BackConsume, CardSource, Consume, ConsumeSms, CustomerInfo, FileTransfer, OpenSms, Query,
    Refusal, Return, TokenDelete, TokenOpen, TokenPayData, header,
};
use libfuzzer_sys::fuzz_target;

/// A card number put into one field at a time: no refusal may carry any 8 digits of it.
const CANARY: &str = "6217001234567890123";

/// Fields a card number, an SMS code or a secret blob can arrive in, present or not.
const SENSITIVE: [&str; 12] = [
    "accNo",
    "customerInfo",
    "tokenPayData",
    "orderId",
    "txnAmt",
    "reqReserved",
    "reserved",
    "certId",
    "merId",
    "txnTime",
    "origQryId",
    "version",
];

fn leaks(text: &str) -> bool {
    (0..=CANARY.len() - 8).any(|at| text.contains(&CANARY[at..at + 8]))
}

/// Every typed reading of `form`; the refusals' texts.
fn refusals(form: &Form) -> Vec<String> {
    fn text<T>(result: Result<T, Refusal>) -> Option<String> {
        result.err().map(|refusal| refusal.to_string())
    }
    let mut texts = vec![
        text(header(form)),
        text(Consume::parse(form)),
        text(BackConsume::parse(form)),
        text(ConsumeSms::parse(form)),
        text(Return::parse(form)),
        text(Query::parse(form)),
        text(FileTransfer::parse(form)),
        text(OpenSms::parse(form)),
        text(TokenOpen::parse(form)),
        text(TokenDelete::parse(form)),
        text(TokenPayData::parse(form)),
    ];
    if let Ok(header) = header(form) {
        texts.push(text(CardSource::parse(form, &header)));
    }
    if let Some(info) = form.get("customerInfo") {
        texts.push(text(CustomerInfo::parse(info)));
    }
    texts.into_iter().flatten().collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PayResult::parse(text);
        let _ = ResultData::from_json(text);
    }
    let Ok(form) = Form::parse_either(data) else {
        return;
    };
    let _ = refusals(&form);
    // One field and one shape of the card number per input (the input picks them), so that
    // an execution stays cheap and the fuzzer still tries every field across its inputs.
    let mut keys: Vec<&str> = form.iter().map(|(key, _)| key).collect();
    keys.extend(SENSITIVE);
    let key = keys[data.len() % keys.len()];
    let value = match data.first().copied().unwrap_or(0) % 3 {
        0 => CANARY.to_owned(),
        1 => format!("{CANARY}x"),
        _ => format!("{{a={CANARY}}}"),
    };
    let planted = form.clone().with(key, value);
    for refusal in refusals(&planted) {
        assert!(
            !leaks(&refusal),
            "a refusal carries the value of {key}: {refusal}"
        );
    }
});
