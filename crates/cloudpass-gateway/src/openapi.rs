//! The OpenAPI 3.1 document of the gateway's JSON endpoints (the payment control's API and
//! the certification checklist), served at `/gateway/openapi.json`. The operations are a
//! table checked against the router; every request and response schema is generated from
//! the Rust type the handler reads or writes (`schemars`), so the document cannot drift
//! from the code. The UPACP form endpoints are not JSON: docs/upacp.md describes them.

use cloudpass_http::openapi::{Schemas, json_body};
use serde_json::{Value, json};

use crate::PayRequest;
use crate::certification::Certification;
use crate::http::SmsRequest;
use crate::pay::PayResult;
use crate::sandbox_clock::{AdvanceClock, ClockView};
use crate::sms::SmsSent;

/// Every JSON route of the gateway, as (method, path): the document must list exactly these.
pub const JSON_ROUTES: [(&str, &str); 6] = [
    ("get", "/gateway/openapi.json"),
    ("post", crate::http::PAY_PATH),
    ("post", crate::http::PAY_SMS_PATH),
    ("get", crate::http::CERTIFICATION_PATH),
    ("get", crate::http::CLOCK_PATH),
    ("post", crate::http::CLOCK_PATH),
];

/// The whole document.
pub fn document() -> Value {
    let mut schemas = Schemas::new();
    let ok = json_body;
    let pay_result = schemas.response::<PayResult>();
    let certification = schemas.response::<Certification>();
    let pay = json!({
        "tags": ["payment control"],
        "summary": "Pay the order of a TN with a card: a card-not-present authorization through the switch",
        "parameters": [{"name": "tn", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9]{21}$"}}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": schemas.request::<PayRequest>()}}},
        "responses": {
            "200": ok(pay_result, "paid, failed (declined by the issuer) or unknown (query the order)"),
            "400": schemas.error("not JSON, or a field this API does not take"),
            "404": schemas.error("tn_not_found"),
            "409": schemas.error("order_not_payable, order_timed_out"),
            "422": schemas.error("card_number_invalid, card_unknown, sms_code_wrong, sms_code_not_sent, sms_code_expired, input_missing, input_invalid (each counts as a try)"),
            "429": schemas.error("too_many_tries"),
            "503": schemas.error("network_not_ready, unavailable"),
        },
    });
    let sms_sent = schemas.response::<SmsSent>();
    let sms = json!({
        "tags": ["payment control"],
        "summary": "Text an SMS code to the phone the card's bank holds (cards without a published test code): good for 5 minutes, for this TN and card, once",
        "parameters": [{"name": "tn", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9]{21}$"}}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": schemas.request::<SmsRequest>()}}},
        "responses": {
            "200": ok(sms_sent, "sent (to the masked phone), or published: a published test card takes its fixed code and nothing is sent"),
            "400": schemas.error("not JSON, or a field this API does not take"),
            "404": schemas.error("tn_not_found"),
            "409": schemas.error("order_not_payable, order_timed_out"),
            "422": schemas.error("card_number_invalid, card_unknown (each counts as a try), sms_unavailable (the bank holds no phone for the card)"),
            "429": schemas.error("sms_too_soon (a code was sent less than 60 seconds ago), too_many_sms_codes (5 per TN), too_many_tries"),
            "503": schemas.error("unavailable"),
        },
    });
    let checklist = json!({
        "tags": ["certification"],
        "summary": "The standard cases a merchant's own traffic has passed in the sandbox",
        "parameters": [{"name": "mer_id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {
            "200": ok(certification, "the checklist"),
            "404": schemas.error("merchant_not_found"),
            "503": schemas.error("unavailable"),
        },
    });
    let mer_id =
        json!([{"name": "mer_id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let clock = schemas.response::<ClockView>();
    let read_clock = json!({
        "tags": ["sandbox clock"],
        "summary": "The time a merchant's orders live by in the sandbox",
        "parameters": mer_id,
        "responses": {
            "200": ok(clock.clone(), "the merchant's clock"),
            "404": schemas.error("merchant_not_found"),
            "503": schemas.error("unavailable"),
        },
    });
    let advance_clock = json!({
        "tags": ["sandbox clock"],
        "summary": "Move a merchant's sandbox clock forward: payTimeout, the clearing day and the notification schedule follow it",
        "parameters": mer_id,
        "requestBody": {"required": true, "content": {"application/json": {"schema": schemas.request::<AdvanceClock>()}}},
        "responses": {
            "200": ok(clock, "the merchant's clock, advanced"),
            "400": schemas.error("invalid_request: not JSON, or a field this API does not take"),
            "404": schemas.error("merchant_not_found"),
            "422": schemas.error("input_invalid: advance_seconds out of range"),
            "503": schemas.error("unavailable"),
        },
    });
    let this = json!({
        "tags": ["meta"],
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "cloudpass institution gateway: JSON APIs",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The payment control's API (pay a TN) and the certification checklist. Errors are {code, message}. The UPACP form endpoints are in docs/upacp.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": {
            "/gateway/openapi.json": {"get": this},
            crate::http::PAY_PATH: {"post": pay},
            crate::http::PAY_SMS_PATH: {"post": sms},
            crate::http::CERTIFICATION_PATH: {"get": checklist},
            crate::http::CLOCK_PATH: {"get": read_clock, "post": advance_clock},
        },
        "components": {"schemas": schemas.components()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_json_route_is_documented_and_nothing_else() {
        let document = document();
        for (method, path) in JSON_ROUTES {
            assert!(
                document["paths"][path][method].is_object(),
                "{method} {path} missing from the OpenAPI document"
            );
        }
        let documented: usize = document["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .values()
                    .filter_map(Value::as_object)
                    .map(serde_json::Map::len)
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(documented, JSON_ROUTES.len());
    }

    #[test]
    fn the_schemas_are_the_types() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        let request = &schemas["PayRequest"];
        assert_eq!(request["required"], json!(["card_number", "sms_code"]));
        for field in ["card_number", "sms_code", "pin", "cvn2", "expiry"] {
            assert!(request["properties"][field].is_object(), "{field}");
        }
        assert_eq!(request["additionalProperties"], json!(false));
        let result = &schemas["PayResult"];
        for field in [
            "tn",
            "status",
            "resp_code",
            "message",
            "query_id",
            "pay_card_type",
        ] {
            assert!(result["properties"][field].is_object(), "{field}");
        }
        assert!(schemas["Certification"]["properties"]["cases"].is_object());
        assert_eq!(schemas["ErrorBody"]["required"], json!(["code", "message"]));
    }
}
