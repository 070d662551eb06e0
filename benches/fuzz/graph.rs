//! Graph target: sendMail bodies (JSON and MIME), delta queries and skip tokens, and the
//! applications API, with a good token, the wrong audience, a broken one or none.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use maildrill::tenant::demo;
use serde_json::{Map, Value, json};

use super::harness::{Check, Gen};
use super::http::{self, EXCHANGE_TOKEN, GRAPH_TOKEN, Request, pct};
use super::mutate::{self, HUGE_NUMBERS, NASTY, Rng};

/// Generates Graph requests.
pub struct GraphGen;

impl Gen for GraphGen {
    type Input = Request;

    fn input(&self, r: &mut Rng) -> Request {
        let mut request = match r.below(10) {
            0..=4 => send_mail(r),
            5 | 6 => delta(r),
            _ => applications(r),
        };
        if r.one_in(10) {
            let dictionary: [&[u8]; 5] = [b"{", b"\"message\":", b"[", b"/", b"%"];
            request.body = mutate::mutate(r, &request.body, &dictionary, 400_000);
        }
        if r.one_in(20) {
            request.method = r.pick(&["GET", "POST", "PUT", "DELETE", "PATCH"]);
        }
        let auth = match r.below(12) {
            0 => None,
            1 => Some(format!("Bearer {EXCHANGE_TOKEN}")),
            2 => Some(format!("bearer  {GRAPH_TOKEN} ")),
            3 => Some(format!("Bearer {}", mutate::escape(&r.some_bytes(300)))),
            4 => Some(format!("Basic {GRAPH_TOKEN}")),
            5 => Some(format!("Bearer {}.{}", r.pick(NASTY), r.pick(HUGE_NUMBERS))),
            _ => Some(format!("Bearer {GRAPH_TOKEN}")),
        };
        if let Some(auth) = auth {
            request.headers.push(("Authorization", auth.into_bytes()));
        }
        request
    }

    fn show(&self, input: &Request) -> String {
        input.show()
    }
}

fn user(r: &mut Rng) -> String {
    let nasty = pct(format!("a{}b@x", r.pick(NASTY)).as_bytes());
    r.pick(&[
        demo::MAILBOX,
        demo::MAILBOX,
        demo::MAILBOX_ID,
        "MAILMAN@contoso.onmicrosoft.com",
        "mailman%40contoso.onmicrosoft.com",
        "other@contoso.onmicrosoft.com",
        "me",
        "%",
        &nasty,
    ])
    .to_string()
}

fn send_mail(r: &mut Rng) -> Request {
    let uri = format!("/v1.0/users/{}/sendMail", user(r));
    if r.one_in(6) {
        let mut request = Request::new("POST", uri, mime_body(r));
        request
            .headers
            .push(("Content-Type", b"text/plain".to_vec()));
        return request;
    }
    let body = match r.below(8) {
        0 => mutate::random_bytes(r, 2000),
        1 => deep(r),
        _ => {
            let mut message = message(r);
            for _ in 0..r.below(4) {
                perturb(r, &mut message, 0);
            }
            serde_json::to_vec(&message).unwrap_or_default()
        }
    };
    let mut request = Request::new("POST", uri, body);
    let content_type = r.pick(&[
        "application/json",
        "application/json; charset=utf-8",
        "text/json",
        "",
    ]);
    request
        .headers
        .push(("Content-Type", content_type.as_bytes().to_vec()));
    request
}

fn recipient(r: &mut Rng) -> Value {
    let address = r.pick(&[
        "b@y.example",
        demo::MAILBOX,
        "",
        "no-at",
        "ünï@x",
        "a\r\nBcc: c@d",
    ]);
    json!({"emailAddress": {"address": address, "name": r.pick(NASTY)}})
}

/// A sendMail body as the SDKs write it.
fn message(r: &mut Rng) -> Value {
    let recipients: Vec<Value> = (0..r.range(0, 3)).map(|_| recipient(r)).collect();
    let id = format!("<{}@x>", r.word());
    json!({
        "message": {
            "subject": r.pick(&["hello", "", "é💥", "\u{0}"]),
            "body": {"contentType": r.pick(&["Text", "HTML", "x"]), "content": "hi"},
            "toRecipients": recipients,
            "ccRecipients": [recipient(r)],
            "from": recipient(r),
            "internetMessageId": id,
            "internetMessageHeaders": [{"name": "X-Maildrill-Idempotency-Key", "value": r.word().to_string()}],
        },
        "saveToSentItems": r.one_in(2),
    })
}

/// A random value: wrong types, huge arrays, long strings.
fn random_value(r: &mut Rng, depth: usize) -> Value {
    match r.below(if depth > 4 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(r.one_in(2)),
        2 => serde_json::from_str(r.pick(HUGE_NUMBERS)).unwrap_or(json!(-1)),
        3 => json!(r.pick(NASTY)),
        4 => json!("s".repeat(r.size(100_000))),
        5 => json!(r.word()),
        6 => Value::Array(
            (0..r.size(20_000))
                .map(|_| json!({"emailAddress": {"address": "b@y"}}))
                .collect(),
        ),
        7 => Value::Array(
            (0..r.below(4))
                .map(|_| random_value(r, depth + 1))
                .collect(),
        ),
        _ => {
            let mut map = Map::new();
            map.insert(
                r.pick(&["message", "emailAddress", "address", "toRecipients", "x"])
                    .into(),
                random_value(r, depth + 1),
            );
            Value::Object(map)
        }
    }
}

/// Changes one node: a wrong type, a renamed key (another case), an unknown property.
fn perturb(r: &mut Rng, value: &mut Value, depth: usize) {
    let Value::Object(map) = value else {
        *value = random_value(r, depth);
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    if keys.is_empty() || r.one_in(5) {
        map.insert(
            r.pick(&["unknownProperty", "@odata.type", "MESSAGE", ""])
                .into(),
            random_value(r, depth),
        );
        return;
    }
    let key = &keys[r.below(keys.len())];
    match r.below(4) {
        0 => {
            if let Some(child) = map.remove(key) {
                let renamed = match r.below(3) {
                    0 => key.to_ascii_uppercase(),
                    1 => key.to_ascii_lowercase(),
                    _ => format!("{key} "),
                };
                map.insert(renamed, child);
            }
        }
        1 => {
            map.remove(key);
        }
        2 => {
            map.insert(key.clone(), random_value(r, depth));
        }
        _ => {
            if let Some(child) = map.get_mut(key) {
                match child {
                    Value::Array(items) if !items.is_empty() => {
                        let i = r.below(items.len());
                        perturb(r, &mut items[i], depth + 1);
                    }
                    _ => perturb(r, child, depth + 1),
                }
            }
        }
    }
}

/// Deep nesting and duplicated keys, which a `Value` cannot hold.
fn deep(r: &mut Rng) -> Vec<u8> {
    let n = r
        .pick(&[&10usize, &127, &128, &129, &5000, &100_000])
        .to_owned();
    match r.below(3) {
        0 => format!("{{\"message\":{}{}", "[".repeat(n), "]".repeat(n)).into_bytes(),
        1 => format!("{}1{}", "{\"message\":".repeat(n), "}".repeat(n)).into_bytes(),
        _ => br#"{"message":{"toRecipients":[]},"message":{"toRecipients":[{"emailAddress":{"address":"b@y"}}]}}"#.to_vec(),
    }
}

fn mime_body(r: &mut Rng) -> Vec<u8> {
    let headers = format!(
        "From: {}\r\nTo: {}\r\nSubject: s{}\r\nMessage-ID: <{}@x>\r\n\r\nbody",
        r.pick(&["A <mailman@contoso.onmicrosoft.com>", "", "<>"]),
        r.pick(&["b@y", "B <b@y>, c@z", "", "<", ">x<"]),
        r.pick(NASTY),
        r.word()
    );
    let encoded = STANDARD.encode(headers);
    match r.below(4) {
        0 => mutate::mutate(r, encoded.as_bytes(), &[b"=", b"\r\n", b"/"], 100_000),
        1 => encoded
            .as_bytes()
            .chunks(76)
            .collect::<Vec<_>>()
            .join(&b"\r\n"[..]),
        _ => encoded.into_bytes(),
    }
}

fn delta(r: &mut Rng) -> Request {
    let folder = r.pick(&[
        "inbox",
        "Inbox",
        "INBOX",
        "mailFolders('inbox')",
        "sentitems",
        "%",
        "x%00",
    ]);
    let function = r.pick(&[
        "delta",
        "delta()",
        "microsoft.graph.delta",
        "microsoft.graph.delta()",
        "Delta",
    ]);
    let long = "t".repeat(r.range(100, 9000));
    let (huge, nasty) = (r.pick(HUGE_NUMBERS), r.pick(NASTY));
    let token = r
        .pick(&[
            "{DELTA_TOKEN}",
            "{DELTA_TOKEN}",
            "",
            "%zz",
            "AAAA",
            "-1",
            "0",
            &long,
            huge,
            nasty,
        ])
        .to_string();
    let mutated =
        String::from_utf8_lossy(&mutate::mutate(r, token.as_bytes(), &[b"%", b"&"], 20_000))
            .into_owned();
    let query = match r.below(8) {
        0 => String::new(),
        1 => format!("?$skiptoken={}", pct(mutated.as_bytes())),
        2 => format!("?$deltatoken={token}&$skiptoken={}", pct(token.as_bytes())),
        3 => format!("?$select=subject,from&$top={}", r.pick(HUGE_NUMBERS)),
        4 => format!("?$deltatoken={}", pct(mutated.as_bytes())),
        5 => r
            .pick(&["?%zz", "?&&&", "?$deltatoken", "?=", "?$skiptoken=%"])
            .to_string(),
        _ => format!("?$deltatoken={token}"),
    };
    let uri = format!(
        "/v1.0/users/{}/mailFolders/{folder}/messages/{function}{query}",
        user(r)
    );
    let mut request = Request::new("GET", uri, Vec::new());
    if r.one_in(3) {
        let prefer = format!("odata.maxpagesize={}", r.pick(HUGE_NUMBERS));
        request.headers.push(("Prefer", prefer.into_bytes()));
    }
    request
}

fn date(r: &mut Rng) -> Value {
    json!(r.pick(&[
        "2025-03-01T00:00:00Z",
        "2025-03-01T00:00:00.1234567Z",
        "+262142-12-31T23:59:59Z",
        "+262143-12-31T23:59:59Z",
        "-262143-01-01T00:00:00Z",
        "-262000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "garbage",
        "",
        "2025-03-01T00:00:00+14:00",
        "2025-03-01",
        "+100000-01-01T00:00:00Z",
    ]))
}

/// An addPassword body: a name and dates (some past chrono's range), sometimes perturbed.
fn add_password(r: &mut Rng) -> Vec<u8> {
    let mut spec = Map::new();
    for key in ["displayName", "startDateTime", "endDateTime"] {
        if r.below(3) > 0 {
            let value = if key == "displayName" {
                json!(r.pick(NASTY))
            } else {
                date(r)
            };
            spec.insert(key.into(), value);
        }
    }
    let mut body = json!({"passwordCredential": spec});
    if r.one_in(4) {
        perturb(r, &mut body, 0);
    }
    if r.one_in(10) {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

fn applications(r: &mut Rng) -> Request {
    let reference = match r.below(6) {
        0 => format!("applications/{}", demo::APP_OBJECT_ID),
        1 => format!("applications(appId='{}')", demo::APP_ID),
        2 => format!("applications(appId={})", demo::APP_ID),
        3 => format!("applications/{}", pct(r.pick(NASTY).as_bytes())),
        4 => format!("applications/{}", demo::APP_ID),
        _ => "applications".to_string(),
    };
    match r.below(4) {
        0 => {
            let good = format!("appId eq '{}'", demo::APP_ID);
            let filter = r.pick(&[
                &good as &str,
                "appId eq ''",
                "appId eq 'a''b'",
                "displayName eq 'x'",
                "appId",
                "'",
            ]);
            let select = r.pick(&["", "&$select=keyCredentials", "&$select=id,,keyCredentials"]);
            Request::new(
                "GET",
                format!(
                    "/v1.0/{reference}?$filter={}{select}",
                    pct(filter.as_bytes())
                ),
                Vec::new(),
            )
        }
        1 => Request::new(
            "POST",
            format!("/v1.0/{reference}/addPassword"),
            add_password(r),
        ),
        2 => {
            let key = r.pick(&["00000000-0000-0000-0000-000000000000", "", "x"]);
            let mut body = json!({"keyId": key});
            if r.one_in(3) {
                perturb(r, &mut body, 0);
            }
            Request::new(
                "POST",
                format!("/v1.0/{reference}/removePassword"),
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
        _ => Request::new(
            "GET",
            format!(
                "/v1.0/{reference}{}",
                r.pick(&["", "?$select=keyCredentials", "/x/y/z/w/v/u/t"])
            ),
            Vec::new(),
        ),
    }
}

/// Sends Graph requests at the mocks.
pub struct GraphCheck(pub http::Target);

impl Check<Request> for GraphCheck {
    fn check(&mut self, input: &Request) -> Result<u16, String> {
        match self.0.handle(input)? {
            None => Ok(0),
            Some((path, response)) => http::check_reply(&path, &response),
        }
    }
}
