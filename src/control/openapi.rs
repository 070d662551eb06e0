//! The OpenAPI 3.1 document the API serves at `GET openapi.json`: paths from the route table,
//! bodies and answers from the same Rust types the handlers read and write (via schemars).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::apps::{AddedSecret, Advance, AppsView, ClockView, NewSecret, SecretView};
use super::events::{TenantEventCall, UserEventCall};
use super::evidence::{AlertsView, JournalPage, JournalQuery, MessagesView};
use super::faults::{FaultView, FaultsView, NewFault};
use super::problem::Problem;
use super::routes::{Op, ROUTES, Route, params};

/// The request body an operation reads, and whether it must be sent: an empty body reads as
/// `{}`, which is a whole call where every field is optional (a generated secret).
fn request(op: Op, generator: &mut SchemaGenerator) -> Option<(Schema, bool)> {
    Some(match op {
        Op::AdvanceClock => (generator.subschema_for::<Advance>(), true),
        Op::AddSecret => (generator.subschema_for::<NewSecret>(), false),
        Op::InjectFault => (generator.subschema_for::<NewFault>(), true),
        Op::UserEvent => (generator.subschema_for::<UserEventCall>(), true),
        Op::TenantEvent => (generator.subschema_for::<TenantEventCall>(), true),
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
        Op::RemoveSecret
        | Op::ClearFaults
        | Op::ClearFault
        | Op::Reset
        | Op::UserEvent
        | Op::TenantEvent => None,
    }
}

/// The OpenAPI links of an operation's success answer: which later calls take their
/// parameters from it (an added secret's key to expire it, an injected fault's id to clear it).
fn links(op: Op) -> Option<Value> {
    let link = |id: &str, parameters: Value| json!({"operationId": id, "parameters": parameters});
    let body = |pointer: &str| format!("$response.body#{pointer}");
    Some(match op {
        Op::Apps => {
            let (app_id, key_id) = (body("/apps/0/app_id"), body("/apps/0/secrets/0/key_id"));
            json!({
                "addSecret": link("addSecret", json!({"app": app_id})),
                "expireSecret": link("expireSecret", json!({"app": app_id, "key": key_id})),
                "removeSecret": link("removeSecret", json!({"app": app_id, "key": key_id})),
            })
        }
        Op::AddSecret => {
            let both = json!({"app": body("/app_id"), "key": body("/key_id")});
            json!({
                "expireSecret": link("expireSecret", both.clone()),
                "removeSecret": link("removeSecret", both),
            })
        }
        Op::Faults => {
            json!({"clearFault": link("clearFault", json!({"id": body("/faults/0/id")}))})
        }
        Op::InjectFault => json!({"clearFault": link("clearFault", json!({"id": body("/id")}))}),
        _ => return None,
    })
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

/// A path parameter's schema: the type its handler parses the segment as.
fn path_param(name: &str, generator: &mut SchemaGenerator) -> Value {
    let schema = match name {
        // `DELETE faults/{id}` parses the number `GET faults` lists.
        "id" => generator.subschema_for::<u64>(),
        _ => generator.subschema_for::<String>(),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

/// The schemas of one document: what the handlers read (as serde deserialises it) and what
/// they write (as serde serialises it: a field skipped when empty is not required).
struct Generators {
    reads: SchemaGenerator,
    writes: SchemaGenerator,
}

fn operation(route: &Route, generators: &mut Generators) -> Value {
    let mut parameters: Vec<Value> = params(route.path)
        .map(|name| path_param(name, &mut generators.reads))
        .collect();
    parameters.extend(query(route.op));
    let problem = json!({"description": "A refused call: RFC 9457 problem details.",
        "content": {"application/problem+json": {
            "schema": generators.writes.subschema_for::<Problem>()}}});
    let mut success = json!({"description": route.summary});
    if let Some(schema) = response(route.op, &mut generators.writes) {
        success["content"] = json!({"application/json": {"schema": schema}});
    }
    if let Some(links) = links(route.op) {
        success["links"] = links;
    }
    let mut operation = json!({
        "operationId": route.id,
        "summary": route.summary,
        "parameters": parameters,
        "responses": {route.status.to_string(): success, "4XX": problem},
    });
    if let Some((schema, required)) = request(route.op, &mut generators.reads) {
        operation["requestBody"] = json!({"required": required,
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

/// Both generators' named schemas. A type both read and written (a vocabulary word, a
/// duration) has one schema either way: its serde impls mirror each other.
fn definitions(generators: &mut Generators) -> Map<String, Value> {
    let mut all = generators.reads.take_definitions(true);
    for (name, schema) in generators.writes.take_definitions(true) {
        debug_assert!(
            all.get(&name).is_none_or(|read| *read == schema),
            "{name} reads and writes differently"
        );
        all.insert(name, schema);
    }
    all
}

/// The document.
pub(super) fn document() -> Value {
    let mut generators = Generators {
        reads: settings().for_deserialize().into_generator(),
        writes: settings().for_serialize().into_generator(),
    };
    let mut paths = Map::new();
    for route in &ROUTES {
        let item = paths
            .entry(format!("/{}", route.path))
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation(route, &mut generators);
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
            "schemas": definitions(&mut generators),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}
