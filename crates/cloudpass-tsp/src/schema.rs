//! JSON Schemas of the API's string fields whose values the core enumerates, generated from
//! the core's own lists (`DeviceKind::ALL`, `SuspendReason::ALL`, …): the OpenAPI document
//! names exactly the values the code takes and gives.

use cloudpass_core::device::{DeviceEvent, DeviceKind};
use cloudpass_core::lifecycle::{
    Channel, DeleteReason, Hold, ResumeReason, SuspendReason, TokenStatus,
};
use schemars::{Schema, SchemaGenerator, json_schema};

use crate::service::CardEvent;

/// The token domains a token may be used in.
pub const DOMAINS: [&str; 2] = ["nfc", "in_app"];
/// A provisioning decision the API answers with (red is an error).
pub const DECISIONS: [&str; 2] = ["green", "yellow"];

fn one_of(values: impl IntoIterator<Item = &'static str>) -> Schema {
    let values: Vec<&str> = values.into_iter().collect();
    json_schema!({"type": "string", "enum": values})
}

fn list_of(values: impl IntoIterator<Item = &'static str>) -> Schema {
    let item = one_of(values);
    json_schema!({"type": "array", "items": item})
}

pub fn device_kind(_: &mut SchemaGenerator) -> Schema {
    one_of(DeviceKind::ALL.map(DeviceKind::as_str))
}

pub fn device_event(_: &mut SchemaGenerator) -> Schema {
    one_of(DeviceEvent::ALL.map(DeviceEvent::as_str))
}

pub fn card_event(_: &mut SchemaGenerator) -> Schema {
    one_of(CardEvent::ALL.map(CardEvent::as_str))
}

pub fn suspend_reason(_: &mut SchemaGenerator) -> Schema {
    one_of(SuspendReason::ALL.iter().map(|r| r.as_str()))
}

pub fn resume_reason(_: &mut SchemaGenerator) -> Schema {
    one_of(ResumeReason::ALL.iter().map(|r| r.as_str()))
}

pub fn delete_reason(_: &mut SchemaGenerator) -> Schema {
    one_of(DeleteReason::ALL.iter().map(|r| r.as_str()))
}

pub fn token_status(_: &mut SchemaGenerator) -> Schema {
    one_of(TokenStatus::ALL.map(TokenStatus::as_str))
}

pub fn channel(_: &mut SchemaGenerator) -> Schema {
    one_of(Channel::ALL.map(Channel::as_str))
}

pub fn holds(_: &mut SchemaGenerator) -> Schema {
    list_of(Hold::ALL.map(Hold::as_str))
}

pub fn domains(_: &mut SchemaGenerator) -> Schema {
    list_of(DOMAINS)
}

pub fn decision(_: &mut SchemaGenerator) -> Schema {
    one_of(DECISIONS)
}

/// YYMM.
pub fn expiry(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^[0-9]{4}$"})
}
