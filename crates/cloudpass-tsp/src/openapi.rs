//! The OpenAPI 3.1 document of `/tsp/v1`, served at `/tsp/v1/openapi.json`. The operations
//! are a table next to the router (a test checks that every route appears, and nothing
//! else); every request and response schema is generated from the Rust type the handler
//! reads or writes (`schemars`), and the enumerated values from the core's own lists
//! (`crate::schema`), so the document cannot drift from the code.

use cloudpass_http::openapi::{Schemas, json_body};
use serde_json::{Map, Value, json};

use crate::http::{
    CardBody, CardEventBody, CardNumberBody, CardProfile, CvmLimitsBody, DeleteBody,
    DeviceEventBody, HistoryList, MetadataBody, NewDevice, NewUser, NotificationList, OtpBody,
    ProvisionBody, PushReceiptBody, ReissueBody, ResumeBody, StepUpOnly, SuspendBody, TokenList,
};
use crate::model::{DeviceView, TokenView};
use crate::service::{
    ActivationOutcome, CardTokens, CvmLimitsView, DeclinesView, DeviceEventOutcome,
    ProvisionOutcome, PushReceiptView, UserView,
};

struct Operation {
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    /// Who may call it: `wallet`, `issuer`, `both` or `anyone`.
    caller: &'static str,
    request: Option<Value>,
    response: Value,
    success: &'static str,
    mutating: bool,
}

#[allow(clippy::too_many_arguments)]
fn operation(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    caller: &'static str,
    request: Option<Value>,
    response: Value,
    success: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        tag,
        summary,
        caller,
        request,
        response,
        success,
        mutating: method != "get",
    }
}

/// A POST that changes nothing (a card number goes in the body, never the URL): no
/// Idempotency-Key.
fn read_only(mut operation: Operation) -> Operation {
    operation.mutating = false;
    operation
}

fn operations(s: &mut Schemas) -> Vec<Operation> {
    // A card body is a part of provisioning's request; named so the component is shared.
    let _ = s.request::<CardBody>();
    vec![
        operation(
            "get",
            "/tsp/v1/openapi.json",
            "meta",
            "This document",
            "anyone",
            None,
            json!({"type": "object"}),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/users",
            "wallet",
            "Register a wallet account",
            "wallet",
            Some(s.request::<NewUser>()),
            s.response::<UserView>(),
            "201",
        ),
        operation(
            "post",
            "/tsp/v1/devices",
            "wallet",
            "Register a device and its public key",
            "wallet",
            Some(s.request::<NewDevice>()),
            s.response::<DeviceView>(),
            "201",
        ),
        operation(
            "get",
            "/tsp/v1/devices/{device_id}",
            "wallet",
            "A device",
            "wallet",
            None,
            s.response::<DeviceView>(),
            "200",
        ),
        operation(
            "get",
            "/tsp/v1/devices/{device_id}/tokens",
            "queries",
            "The tokens on a device (add ?include_deleted=true for deleted ones)",
            "wallet",
            None,
            s.response::<TokenList>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/devices/{device_id}/events",
            "device events",
            "Report a device event",
            "wallet",
            Some(s.request::<DeviceEventBody>()),
            s.response::<DeviceEventOutcome>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens",
            "provisioning",
            "Load a card onto a device (green: 201, yellow: 202, red: 422 PROVISIONING_DECLINED)",
            "wallet",
            Some(s.request::<ProvisionBody>()),
            s.response::<ProvisionOutcome>(),
            "201",
        ),
        operation(
            "get",
            "/tsp/v1/tokens/{token_id}",
            "queries",
            "A token",
            "both",
            None,
            s.response::<TokenView>(),
            "200",
        ),
        operation(
            "get",
            "/tsp/v1/tokens/{token_id}/history",
            "queries",
            "Every change to a token, oldest first",
            "both",
            None,
            s.response::<HistoryList>(),
            "200",
        ),
        operation(
            "get",
            "/tsp/v1/tokens/{token_id}/notifications",
            "queries",
            "The notifications about a token sent to the caller, with delivery state",
            "both",
            None,
            s.response::<NotificationList>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens/{token_id}/activate",
            "provisioning",
            "Complete step-up with the OTP",
            "wallet",
            Some(s.request::<OtpBody>()),
            s.response::<ActivationOutcome>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens/{token_id}/otp",
            "provisioning",
            "Send a new OTP",
            "wallet",
            None,
            s.response::<StepUpOnly>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens/{token_id}/suspend",
            "lifecycle",
            "Suspend (挂失)",
            "both",
            Some(s.request::<SuspendBody>()),
            s.response::<TokenView>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens/{token_id}/resume",
            "lifecycle",
            "Resume (解挂)",
            "both",
            Some(s.request::<ResumeBody>()),
            s.response::<TokenView>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens/{token_id}/delete",
            "lifecycle",
            "Delete (注销)",
            "both",
            Some(s.request::<DeleteBody>()),
            s.response::<TokenView>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens/{token_id}/default",
            "lifecycle",
            "Make the device's default card",
            "wallet",
            None,
            s.response::<TokenView>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens/{token_id}/metadata",
            "lifecycle",
            "Update a token's metadata (METADATA_UPDATED)",
            "issuer",
            Some(s.request::<MetadataBody>()),
            s.response::<TokenView>(),
            "200",
        ),
        operation(
            "get",
            "/tsp/v1/tokens/{token_id}/card-profile",
            "provisioning",
            "The card profile sealed to the token's device again",
            "wallet",
            None,
            s.response::<CardProfile>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/tokens/{token_id}/keys",
            "provisioning",
            "Replenish an HCE token's limited-use keys",
            "wallet",
            None,
            s.response::<CardProfile>(),
            "200",
        ),
        read_only(operation(
            "post",
            "/tsp/v1/issuer/cards/tokens",
            "issuer",
            "A card and its tokens (the card number is in the body, never the URL)",
            "issuer",
            Some(s.request::<CardNumberBody>()),
            s.response::<CardTokens>(),
            "200",
        )),
        operation(
            "post",
            "/tsp/v1/issuer/cards/events",
            "issuer",
            "The physical card was lost, stolen, found or closed",
            "issuer",
            Some(s.request::<CardEventBody>()),
            s.response::<CardTokens>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/issuer/cards/reissue",
            "issuer",
            "The card was reissued: tokens keep their numbers and map to the new card",
            "issuer",
            Some(s.request::<ReissueBody>()),
            s.response::<CardTokens>(),
            "200",
        ),
        operation(
            "put",
            "/tsp/v1/issuer/products/{product}/cvm-limits",
            "issuer",
            "A card product's no-PIN limits (METADATA_UPDATED to every wallet)",
            "issuer",
            Some(s.request::<CvmLimitsBody>()),
            s.response::<CvmLimitsView>(),
            "200",
        ),
        operation(
            "post",
            "/tsp/v1/issuer/push-receipts",
            "issuer",
            "A single-use receipt for push provisioning from the bank's app to one wallet's device",
            "issuer",
            Some(s.request::<PushReceiptBody>()),
            s.response::<PushReceiptView>(),
            "201",
        ),
        read_only(operation(
            "post",
            "/tsp/v1/issuer/cards/declines",
            "issuer",
            "A card's declined provisioning attempts in the last 24 hours, with the reasons wallets never see",
            "issuer",
            Some(s.request::<CardNumberBody>()),
            s.response::<DeclinesView>(),
            "200",
        )),
    ]
}

/// The whole document.
pub fn document() -> Value {
    let mut schemas = Schemas::new();
    let mut paths = Map::new();
    for operation in operations(&mut schemas) {
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
                operation.success: json_body(operation.response, "success"),
                "default": schemas.error("error: {code, message}, the codes in docs/tsp-api.md"),
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
            "schemas": schemas.components(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpass_core::device::{DeviceEvent, DeviceKind};

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

    #[test]
    fn the_schemas_are_the_types_and_the_core_lists() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        let token = &schemas["Token"]["properties"];
        for field in [
            "token_id",
            "status",
            "holds",
            "ecash",
            "created_at",
            "updated_at",
        ] {
            assert!(token[field].is_object(), "Token.{field}");
        }
        assert_eq!(
            token["status"]["enum"],
            json!(["pending", "active", "suspended", "deleted"])
        );
        let kinds = &schemas["NewDevice"]["properties"]["kind"]["enum"];
        for kind in kinds.as_array().unwrap() {
            assert!(
                DeviceKind::parse(kind.as_str().unwrap()).is_some(),
                "{kind}"
            );
        }
        let events = &schemas["DeviceEventBody"]["properties"]["event"]["enum"];
        assert_eq!(events.as_array().unwrap().len(), DeviceEvent::ALL.len());
        assert_eq!(
            schemas["SuspendBody"]["properties"]["reason"]["enum"],
            json!(["LOST", "STOLEN", "FRAUDULENT", "OTHER"])
        );
        assert_eq!(schemas["NewUser"]["required"], json!(["account_id"]));
        // Every $ref points at a component that exists.
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas[name].is_object(), "dangling $ref to {name}");
        }
    }
}
