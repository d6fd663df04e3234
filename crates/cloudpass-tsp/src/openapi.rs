//! The OpenAPI 3.1 document of `/tsp/v1`, served at `/tsp/v1/openapi.json`. Written as a
//! table next to the router; a test checks that every route appears here.

use serde_json::{Map, Value, json};

fn string() -> Value {
    json!({"type": "string"})
}

fn object(properties: &[(&str, Value)], required: &[&str]) -> Value {
    let mut map = Map::new();
    for (name, schema) in properties {
        map.insert((*name).to_owned(), schema.clone());
    }
    json!({"type": "object", "properties": map, "required": required})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

struct Operation {
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    /// Who may call it: `wallet`, `issuer` or `both`.
    caller: &'static str,
    request: Option<Value>,
    response: Value,
    success: &'static str,
    mutating: bool,
}

fn operations() -> Vec<Operation> {
    let reason = |values: &[&str]| {
        object(
            &[("reason", json!({"type": "string", "enum": values}))],
            &[],
        )
    };
    let token = reference("Token");
    let card_tokens = object(
        &[
            ("card", reference("Card")),
            (
                "tokens",
                json!({"type": "array", "items": reference("Token")}),
            ),
        ],
        &["card", "tokens"],
    );
    let card_number = object(&[("card_number", string())], &["card_number"]);
    vec![
        Operation {
            method: "get",
            path: "/tsp/v1/openapi.json",
            tag: "meta",
            summary: "This document",
            caller: "anyone",
            request: None,
            response: json!({"type": "object"}),
            success: "200",
            mutating: false,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/users",
            tag: "wallet",
            summary: "Register a wallet account",
            caller: "wallet",
            request: Some(object(&[("account_id", string())], &["account_id"])),
            response: object(
                &[("user_id", string()), ("account_id", string())],
                &["user_id", "account_id"],
            ),
            success: "201",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/devices",
            tag: "wallet",
            summary: "Register a device and its public key",
            caller: "wallet",
            request: Some(object(
                &[
                    ("device_id", string()),
                    (
                        "kind",
                        json!({"type": "string", "enum": ["handset_se", "wearable", "hce", "sim_se"]}),
                    ),
                    ("brand", string()),
                    ("account_id", string()),
                    ("unlock_set", json!({"type": "boolean"})),
                    (
                        "public_key",
                        json!({"type": "string", "description": "X25519 public key, 64 hex digits"}),
                    ),
                ],
                &["device_id", "kind", "brand", "unlock_set", "public_key"],
            )),
            response: reference("Device"),
            success: "201",
            mutating: true,
        },
        Operation {
            method: "get",
            path: "/tsp/v1/devices/{device_id}",
            tag: "wallet",
            summary: "A device",
            caller: "wallet",
            request: None,
            response: reference("Device"),
            success: "200",
            mutating: false,
        },
        Operation {
            method: "get",
            path: "/tsp/v1/devices/{device_id}/tokens",
            tag: "queries",
            summary: "The tokens on a device (add ?include_deleted=true for deleted ones)",
            caller: "wallet",
            request: None,
            response: object(
                &[(
                    "tokens",
                    json!({"type": "array", "items": reference("Token")}),
                )],
                &["tokens"],
            ),
            success: "200",
            mutating: false,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/devices/{device_id}/events",
            tag: "device events",
            summary: "Report a device event",
            caller: "wallet",
            request: Some(object(
                &[
                    (
                        "event",
                        json!({"type": "string", "enum": ["lost", "found", "wiped", "restored", "signed_out", "signed_in", "unlock_removed", "unlock_set"]}),
                    ),
                    ("account_id", string()),
                ],
                &["event"],
            )),
            response: object(
                &[
                    ("device", reference("Device")),
                    (
                        "tokens",
                        json!({"type": "array", "items": reference("Token")}),
                    ),
                ],
                &["device", "tokens"],
            ),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens",
            tag: "provisioning",
            summary: "Load a card onto a device (green: 201, yellow: 202, red: 422 PROVISIONING_DECLINED)",
            caller: "wallet",
            request: Some(object(
                &[
                    ("device_id", string()),
                    ("account_id", string()),
                    (
                        "card",
                        object(
                            &[
                                ("number", string()),
                                ("expiry", json!({"type": "string", "pattern": "^[0-9]{4}$"})),
                                ("cvn2", string()),
                            ],
                            &["number", "expiry"],
                        ),
                    ),
                    ("push_receipt", string()),
                    (
                        "domains",
                        json!({"type": "array", "items": {"type": "string", "enum": ["nfc", "in_app"]}}),
                    ),
                    ("ecash", json!({"type": "boolean"})),
                ],
                &["device_id", "account_id"],
            )),
            response: object(
                &[
                    (
                        "decision",
                        json!({"type": "string", "enum": ["green", "yellow"]}),
                    ),
                    ("token", reference("Token")),
                    ("step_up", reference("StepUp")),
                    ("card_profile", reference("Envelope")),
                ],
                &["decision", "token"],
            ),
            success: "201",
            mutating: true,
        },
        Operation {
            method: "get",
            path: "/tsp/v1/tokens/{token_id}",
            tag: "queries",
            summary: "A token",
            caller: "both",
            request: None,
            response: token.clone(),
            success: "200",
            mutating: false,
        },
        Operation {
            method: "get",
            path: "/tsp/v1/tokens/{token_id}/history",
            tag: "queries",
            summary: "Every change to a token, oldest first",
            caller: "both",
            request: None,
            response: object(
                &[(
                    "history",
                    json!({"type": "array", "items": {"type": "object"}}),
                )],
                &["history"],
            ),
            success: "200",
            mutating: false,
        },
        Operation {
            method: "get",
            path: "/tsp/v1/tokens/{token_id}/notifications",
            tag: "queries",
            summary: "The notifications about a token sent to the caller, with delivery state",
            caller: "both",
            request: None,
            response: object(
                &[(
                    "notifications",
                    json!({"type": "array", "items": {"type": "object"}}),
                )],
                &["notifications"],
            ),
            success: "200",
            mutating: false,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens/{token_id}/activate",
            tag: "provisioning",
            summary: "Complete step-up with the OTP",
            caller: "wallet",
            request: Some(object(&[("otp", string())], &["otp"])),
            response: object(
                &[
                    ("token", token.clone()),
                    ("card_profile", reference("Envelope")),
                ],
                &["token", "card_profile"],
            ),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens/{token_id}/otp",
            tag: "provisioning",
            summary: "Send a new OTP",
            caller: "wallet",
            request: None,
            response: object(&[("step_up", reference("StepUp"))], &["step_up"]),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens/{token_id}/suspend",
            tag: "lifecycle",
            summary: "Suspend (挂失)",
            caller: "both",
            request: Some(reason(&["LOST", "STOLEN", "FRAUDULENT", "OTHER"])),
            response: token.clone(),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens/{token_id}/resume",
            tag: "lifecycle",
            summary: "Resume (解挂)",
            caller: "both",
            request: Some(reason(&["FOUND", "FRAUD_CLEARED", "OTHER"])),
            response: token.clone(),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens/{token_id}/delete",
            tag: "lifecycle",
            summary: "Delete (注销)",
            caller: "both",
            request: Some(reason(&[
                "LOST",
                "STOLEN",
                "FRAUDULENT",
                "ACCOUNT_CLOSED",
                "CONSUMER_DELETED",
                "OTHER",
            ])),
            response: token.clone(),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens/{token_id}/default",
            tag: "lifecycle",
            summary: "Make the device's default card",
            caller: "wallet",
            request: None,
            response: token.clone(),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens/{token_id}/metadata",
            tag: "issuer",
            summary: "Update a token's metadata (METADATA_UPDATED)",
            caller: "issuer",
            request: Some(object(
                &[("metadata", json!({"type": "object"}))],
                &["metadata"],
            )),
            response: token.clone(),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "get",
            path: "/tsp/v1/tokens/{token_id}/card-profile",
            tag: "provisioning",
            summary: "The card profile sealed to the token's device again",
            caller: "wallet",
            request: None,
            response: object(
                &[("card_profile", reference("Envelope"))],
                &["card_profile"],
            ),
            success: "200",
            mutating: false,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/tokens/{token_id}/keys",
            tag: "provisioning",
            summary: "Replenish an HCE token's limited-use keys",
            caller: "wallet",
            request: None,
            response: object(
                &[("card_profile", reference("Envelope"))],
                &["card_profile"],
            ),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/issuer/cards/tokens",
            tag: "issuer",
            summary: "A card and its tokens (the card number is in the body, never the URL)",
            caller: "issuer",
            request: Some(card_number.clone()),
            response: card_tokens.clone(),
            success: "200",
            mutating: false,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/issuer/cards/events",
            tag: "issuer",
            summary: "The physical card was lost, stolen, found or closed",
            caller: "issuer",
            request: Some(object(
                &[
                    ("card_number", string()),
                    (
                        "event",
                        json!({"type": "string", "enum": ["lost", "stolen", "found", "closed"]}),
                    ),
                ],
                &["card_number", "event"],
            )),
            response: card_tokens.clone(),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/issuer/cards/reissue",
            tag: "issuer",
            summary: "The card was reissued: tokens keep their numbers and map to the new card",
            caller: "issuer",
            request: Some(object(
                &[
                    ("card_number", string()),
                    ("new_card_number", string()),
                    ("new_expiry", string()),
                ],
                &["card_number", "new_expiry"],
            )),
            response: card_tokens,
            success: "200",
            mutating: true,
        },
        Operation {
            method: "put",
            path: "/tsp/v1/issuer/products/{product}/cvm-limits",
            tag: "issuer",
            summary: "A card product's no-PIN limits (METADATA_UPDATED to every wallet)",
            caller: "issuer",
            request: Some(object(
                &[
                    (
                        "contactless_no_pin_limit",
                        json!({"type": "string", "example": "1000.00"}),
                    ),
                    (
                        "online_no_pin_limit",
                        json!({"type": "string", "example": "500.00"}),
                    ),
                ],
                &["contactless_no_pin_limit", "online_no_pin_limit"],
            )),
            response: json!({"type": "object"}),
            success: "200",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/issuer/push-receipts",
            tag: "issuer",
            summary: "A single-use receipt for push provisioning from the bank's app to one wallet's device",
            caller: "issuer",
            request: Some(object(
                &[
                    ("card_number", string()),
                    ("expiry", string()),
                    ("token_requestor_id", string()),
                    ("device_id", string()),
                ],
                &["card_number", "expiry", "token_requestor_id", "device_id"],
            )),
            response: object(
                &[
                    ("push_receipt", string()),
                    ("token_requestor_id", string()),
                    ("device_id", string()),
                    ("expires_at", json!({"type": "integer"})),
                ],
                &[
                    "push_receipt",
                    "token_requestor_id",
                    "device_id",
                    "expires_at",
                ],
            ),
            success: "201",
            mutating: true,
        },
        Operation {
            method: "post",
            path: "/tsp/v1/issuer/cards/declines",
            tag: "issuer",
            summary: "A card's declined provisioning attempts in the last 24 hours, with the reasons wallets never see",
            caller: "issuer",
            request: Some(object(&[("card_number", string())], &["card_number"])),
            response: object(
                &[
                    ("window_ms", json!({"type": "integer"})),
                    (
                        "declines",
                        json!({"type": "array", "items": {"type": "object", "properties": {
                            "token_requestor_id": {"type": "string"},
                            "user_id": {"type": "string"},
                            "reason": {"type": "string"},
                            "declined_at": {"type": "integer"}
                        }}}),
                    ),
                ],
                &["window_ms", "declines"],
            ),
            success: "200",
            mutating: false,
        },
    ]
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for operation in operations() {
        let mut parameters: Vec<Value> = operation
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if operation.mutating {
            parameters.push(json!({"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string", "maxLength": 128}}));
        }
        let mut item = json!({
            "tags": [operation.tag],
            "summary": operation.summary,
            "description": format!("Caller: {}.", operation.caller),
            "parameters": parameters,
            "responses": {
                operation.success: {"description": "success", "content": {"application/json": {"schema": operation.response}}},
                "default": {"description": "error", "content": {"application/json": {"schema": reference("Error")}}},
            },
        });
        if operation.caller != "anyone" {
            item["security"] = json!([{"bearer": []}]);
        }
        if let Some(request) = operation.request {
            item["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": request}}});
        }
        let entry = paths
            .entry(operation.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[operation.method] = item;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "cloudpass token service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Over-the-air card issuance and the token lifecycle. Wallets (token requestors) and issuers authenticate with their API key. Every mutating call needs an Idempotency-Key. Errors are {code, message}. See docs/tsp-api.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": object(&[("code", string()), ("message", string())], &["code", "message"]),
                "Token": object(
                    &[
                        ("token_id", string()),
                        ("token_last4", string()),
                        ("token_expiry", string()),
                        ("status", json!({"type": "string", "enum": ["pending", "active", "suspended", "deleted"]})),
                        ("status_reason", string()),
                        ("status_channel", json!({"type": "string", "enum": ["wallet", "issuer", "network"]})),
                        ("holds", json!({"type": "array", "items": {"type": "string", "enum": ["wallet", "issuer", "card_lost", "card_stolen", "device_lost"]}})),
                        ("is_default", json!({"type": "boolean"})),
                        ("device_id", string()),
                        ("card_id", string()),
                        ("card_last4", string()),
                        ("par", string()),
                        ("domains", json!({"type": "array", "items": {"type": "string"}})),
                        ("metadata", json!({"type": "object"})),
                    ],
                    &["token_id", "status", "is_default"],
                ),
                "Device": object(&[("device_id", string()), ("kind", string()), ("brand", string()), ("state", string()), ("account_id", string()), ("unlock_set", json!({"type": "boolean"})), ("public_key", string())], &["device_id", "kind", "state"]),
                "Card": object(&[("card_id", string()), ("bin", string()), ("last4", string()), ("expiry", string()), ("funding", string()), ("product", string()), ("status", string()), ("par", string())], &["card_id"]),
                "StepUp": object(&[("method", string()), ("destination", string()), ("expires_at", json!({"type": "integer"})), ("attempts_left", json!({"type": "integer"})), ("resends_left", json!({"type": "integer"})), ("sent", json!({"type": "boolean"}))], &["method", "destination"]),
                "Envelope": object(&[("ephemeral_public_key", string()), ("nonce", string()), ("ciphertext", string())], &["ephemeral_public_key", "nonce", "ciphertext"]),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let document = document();
        for (method, path) in crate::http::ROUTES {
            assert!(
                document["paths"][path][method].is_object(),
                "{method} {path} missing from the OpenAPI document"
            );
        }
        let documented: usize = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            crate::http::ROUTES.len(),
            "the document lists a route the router lacks"
        );
    }
}
