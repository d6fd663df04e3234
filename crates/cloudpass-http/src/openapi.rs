//! What the JSON APIs' OpenAPI 3.1 documents share: schemas generated from the Rust types a
//! handler reads (the deserialize contract: what a request may carry) and writes (the
//! serialize contract), collected under `#/components/schemas`, so a document cannot drift
//! from the code.

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::errors::ErrorBody;

pub struct Schemas {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
}

impl Default for Schemas {
    fn default() -> Self {
        Self::new()
    }
}

impl Schemas {
    pub fn new() -> Schemas {
        let settings = SchemaSettings::draft2020_12().with(|settings| {
            settings.definitions_path = "#/components/schemas".into();
            settings.meta_schema = None;
        });
        Schemas {
            requests: settings.clone().for_deserialize().into_generator(),
            responses: settings.for_serialize().into_generator(),
        }
    }

    /// The schema of a request body of type `T` (a reference to its component).
    pub fn request<T: JsonSchema>(&mut self) -> Value {
        self.requests.subschema_for::<T>().to_value()
    }

    /// The schema of a response body of type `T`.
    pub fn response<T: JsonSchema>(&mut self) -> Value {
        self.responses.subschema_for::<T>().to_value()
    }

    /// An error response: `{code, message}`, with what the codes are.
    pub fn error(&mut self, description: &str) -> Value {
        json!({
            "description": description,
            "content": {"application/json": {"schema": self.response::<ErrorBody>()}},
        })
    }

    /// Every schema referred to so far, for `components.schemas`.
    pub fn components(mut self) -> Map<String, Value> {
        let mut all = self.requests.take_definitions(true);
        all.extend(self.responses.take_definitions(true));
        all
    }
}

/// A JSON body of `schema`, as a request body or a response's content.
pub fn json_body(schema: Value, description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema}},
    })
}
