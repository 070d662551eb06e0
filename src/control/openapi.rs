//! The OpenAPI 3.1 document the API serves at `GET openapi.json`: paths from the route table,
//! bodies and answers from the same Rust types the handlers read and write (via schemars).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::apps::{AddedSecret, Advance, AppsView, ClockView, NewSecret, SecretView};
use super::evidence::{AlertsView, JournalPage, JournalQuery, MessagesView};
use super::faults::{FaultView, FaultsView, NewFault};
use super::problem::Problem;
use super::routes::{Op, ROUTES, Route, params};

/// The request body an operation reads.
fn request(op: Op, generator: &mut SchemaGenerator) -> Option<Schema> {
    Some(match op {
        Op::AdvanceClock => generator.subschema_for::<Advance>(),
        Op::AddSecret => generator.subschema_for::<NewSecret>(),
        Op::InjectFault => generator.subschema_for::<NewFault>(),
        _ => return None,
    })
}

/// The body of an operation's success answer (none for `204`).
fn response(op: Op, generator: &mut SchemaGenerator) -> Option<Schema> {
    fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<T>())
    }
    match op {
        Op::OpenApi => Some(schemars::json_schema!({"type": "object"})),
        Op::Clock | Op::AdvanceClock => of::<ClockView>(generator),
        Op::Apps => of::<AppsView>(generator),
        Op::AddSecret => of::<AddedSecret>(generator),
        Op::ExpireSecret => of::<SecretView>(generator),
        Op::Faults => of::<FaultsView>(generator),
        Op::InjectFault => of::<FaultView>(generator),
        Op::Journal => of::<JournalPage>(generator),
        Op::Messages => of::<MessagesView>(generator),
        Op::Alerts => of::<AlertsView>(generator),
        Op::RemoveSecret | Op::ClearFaults | Op::ClearFault | Op::Reset => None,
    }
}

/// Query parameters: the journal's, one per field of [`JournalQuery`].
fn query(op: Op) -> Vec<Value> {
    if op != Op::Journal {
        return Vec::new();
    }
    let schema = settings()
        .into_generator()
        .into_root_schema_for::<JournalQuery>();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    properties
        .into_iter()
        .map(|(name, mut schema)| {
            let description = schema
                .as_object_mut()
                .and_then(|s| s.remove("description"))
                .unwrap_or(Value::Null);
            json!({"name": name, "in": "query", "required": false,
                   "description": description, "schema": schema})
        })
        .collect()
}

fn operation(route: &Route, generator: &mut SchemaGenerator) -> Value {
    let mut parameters: Vec<Value> = params(route.path)
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(query(route.op));
    let problem = json!({"description": "A refused call: RFC 9457 problem details.",
        "content": {"application/problem+json": {"schema": generator.subschema_for::<Problem>()}}});
    let mut success = json!({"description": route.summary});
    if let Some(schema) = response(route.op, generator) {
        success["content"] = json!({"application/json": {"schema": schema}});
    }
    let mut operation = json!({
        "operationId": route.id,
        "summary": route.summary,
        "parameters": parameters,
        "responses": {route.status.to_string(): success, "4XX": problem},
    });
    if let Some(schema) = request(route.op, generator) {
        operation["requestBody"] = json!({"required": true,
            "content": {"application/json": {"schema": schema}}});
    }
    operation
}

fn settings() -> SchemaSettings {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings
}

/// The document.
pub(super) fn document() -> Value {
    let mut generator = settings().into_generator();
    let mut paths = Map::new();
    for route in &ROUTES {
        let item = paths
            .entry(format!("/{}", route.path))
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation(route, &mut generator);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "maildrill control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Drive maildrill serve's mocks while a client runs: the clock, \
                app secrets, faults, and the evidence (journal, mail, alerts).",
        },
        "servers": [{"url": "/_maildrill"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}
