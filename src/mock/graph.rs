//! The mock Microsoft Graph: `sendMail`, mail delta sync, and the applications API that expiry
//! monitors and rotation jobs use.
//!
//! Every call checks the bearer token against the directory (signature, `exp` on the virtual
//! clock, audience, role) before anything else, as Graph does, so an expired token is a 401 here
//! exactly when it would be refused at SMTP.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::{Value, json};

use super::mime;
use super::wire::{self, GraphError};
use super::{Ctx, HttpRequest, HttpResponse, catalogue_reply, header};
use crate::tenant::{
    App, Directory, InboxMessage, PolicyRefusal, Resource, SentMessage, SentVia, TokenClaims,
    TokenError,
};

/// The operation name of a path, for faults and the journal.
pub fn operation(path: &str) -> &'static str {
    // Every request asks this; a path without escapes needs no decoded copy.
    if path.contains('%') {
        return operation_of(&segments(path));
    }
    let mut raw = [""; 7];
    let mut n = 0;
    for segment in path.trim_start_matches("/v1.0").split('/') {
        if segment.is_empty() {
            continue;
        }
        if n == raw.len() {
            return "other";
        }
        raw[n] = segment;
        n += 1;
    }
    operation_of(&raw[..n])
}

fn operation_of<S: AsRef<str>>(segments: &[S]) -> &'static str {
    let mut names = [""; 7];
    if segments.len() > names.len() {
        return "other";
    }
    for (name, segment) in names.iter_mut().zip(segments) {
        *name = segment.as_ref();
    }
    match &names[..segments.len()] {
        ["users", _, "sendMail"] | ["me", "sendMail"] => "send-mail",
        [
            "me",
            "mailFolders",
            _,
            "messages",
            "delta" | "delta()" | "microsoft.graph.delta" | "microsoft.graph.delta()",
        ] => "delta",
        // The function as a bare name, with its empty parameter list (what Microsoft's SDKs
        // send), or namespace-qualified: OData allows all of them.
        [
            "users",
            _,
            "mailFolders",
            _,
            "messages",
            "delta" | "delta()" | "microsoft.graph.delta" | "microsoft.graph.delta()",
        ] => "delta",
        [app, "addPassword"] if app.starts_with("applications") => "add-password",
        ["applications", _, "addPassword"] => "add-password",
        [app, "removePassword"] if app.starts_with("applications") => "remove-password",
        ["applications", _, "removePassword"] => "remove-password",
        [app, ..] if app.starts_with("applications") => "applications",
        _ => "other",
    }
}

/// A path segment, percent-decoded (borrowed where nothing was escaped).
type Segment<'a> = std::borrow::Cow<'a, str>;

/// Path segments after `/v1.0`.
fn segments(path: &str) -> Vec<Segment<'_>> {
    path.trim_start_matches("/v1.0")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains('%') {
                percent_decode_str(s).decode_utf8_lossy()
            } else {
                Segment::Borrowed(s)
            }
        })
        .collect()
}

/// The first value of query parameter `name` (borrowed unless escaped).
fn query<'a>(request: &'a HttpRequest, name: &str) -> Option<Cow<'a, str>> {
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn err(ctx: &Ctx<'_>, error: GraphError) -> HttpResponse {
    wire::graph_error(error, &ctx.vars, None, None)
}

fn err_with(ctx: &Ctx<'_>, error: GraphError, name: &'static str, value: &str) -> HttpResponse {
    wire::graph_error(error, &ctx.vars.clone().set(name, value), None, None)
}

/// Reply variables known from the request alone, so a forced catalogue reply (a `respond`
/// fault) reads like the real one.
pub(crate) fn request_vars(vars: super::wire::Vars, request: &HttpRequest) -> super::wire::Vars {
    let segments = segments(request.uri().path());
    let user = match segments.first().map(|s| &**s) {
        Some("users") => segments.get(1).map(|s| s.to_string()).unwrap_or_default(),
        _ => String::new(),
    };
    let id = application_ref(&segments).unwrap_or_default();
    vars.set("user", user)
        .set(
            "segment",
            segments
                .first()
                .map_or_else(|| "v1.0".into(), |s| s.to_string()),
        )
        .set("method", request.method().as_str())
        .set("id", id)
        .set("key_id", "")
        .set("generation", "0")
        .set("policy_id", crate::tenant::AppPolicy::DEFAULT_ID)
}

/// The app whose token a call carries and the mailbox under `/users/{id}` (as its UPN when
/// the directory knows it), for faults scoped to an app or a mailbox. An expired token still
/// names its app.
pub(crate) fn requesting_party(
    directory: &Directory,
    request: &HttpRequest,
) -> (Option<String>, Option<String>) {
    let claims = bearer(request).and_then(|b| directory.token_claims(b));
    let segments = segments(request.uri().path());
    let user = match segments.first().map(|s| &**s) {
        Some("users") => segments.get(1).map(|s| s.to_string()),
        // `/me` is the signed-in user of a delegated token.
        Some("me") => claims.as_ref().and_then(|c| c.upn.clone()),
        _ => None,
    };
    let mailbox = user.map(|user| {
        claims
            .as_ref()
            .and_then(|c| directory.mailbox(&c.tid, &user))
            .map_or(user, |m| m.upn.clone())
    });
    (claims.map(|c| c.appid.clone()), mailbox)
}

pub(crate) fn handle(ctx: &mut Ctx<'_>, request: &HttpRequest) -> HttpResponse {
    let segments = segments(request.uri().path());
    let op = operation_of(&segments);
    let method = request.method().clone();
    let expected = match op {
        "send-mail" | "add-password" | "remove-password" => http::Method::POST,
        "delta" | "applications" => http::Method::GET,
        _ => {
            let segment = segments.first().map_or("v1.0", |s| &**s);
            return err_with(ctx, GraphError::UnknownSegment, "segment", segment);
        }
    };
    if method != expected {
        return err_with(ctx, GraphError::MethodNotAllowed, "method", method.as_str());
    }
    let role_error = if op == "send-mail" || op == "delta" {
        GraphError::AccessDenied
    } else {
        GraphError::DirectoryDenied
    };
    let claims = match authorize(ctx, request) {
        Ok(claims) => claims,
        Err(TokenError::MissingRole(_)) => return err(ctx, role_error),
        Err(e) => return err(ctx, token_error(&e)),
    };
    // `/me/...` names the user one segment earlier than `/users/{id}/...`.
    let (user, folder) = if segments.first().is_some_and(|s| s == "me") {
        ("me", segments.get(2))
    } else {
        (segments.get(1).map_or("", |s| &**s), segments.get(3))
    };
    match op {
        "send-mail" => send_mail(ctx, request, &claims, user),
        "delta" => {
            let folder = folder.expect("a delta path has a folder segment");
            delta(ctx, request, &claims, user, folder)
        }
        "applications" => get_applications(ctx, request, &claims, &segments),
        "add-password" => add_password(ctx, request, &claims, &segments),
        _ => remove_password(ctx, request, &claims, &segments),
    }
}

fn token_error(error: &TokenError) -> GraphError {
    match error {
        TokenError::Missing => GraphError::TokenMissing,
        TokenError::Malformed => GraphError::TokenMalformed,
        TokenError::BadSignature => GraphError::TokenInvalid,
        TokenError::Expired(_) => GraphError::TokenExpired,
        TokenError::WrongAudience(_) => GraphError::TokenWrongAudience,
        TokenError::MissingRole(_) => GraphError::AccessDenied,
    }
}

fn authorize(
    ctx: &Ctx<'_>,
    request: &HttpRequest,
) -> Result<std::sync::Arc<TokenClaims>, TokenError> {
    ctx.directory
        .validate_token(bearer(request), Resource::Graph, None, ctx.now)
}

/// Whether the token grants one of `permissions` (an app's role or a user's delegated scope).
/// The token of an `Authorization: Bearer` header.
fn bearer(request: &HttpRequest) -> Option<&str> {
    header(request, "authorization").and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    })
}

fn has_role(claims: &TokenClaims, permissions: &[&str]) -> bool {
    permissions.iter().any(|p| claims.grants(p))
}

/// The mailbox a call may reach: `/me` is a delegated token's user (400 for an app token);
/// a delegated token reaches its own mailbox only (403 `ErrorAccessDenied` for another:
/// the mock's users hold no rights on other mailboxes, wire reference §8.7).
fn reachable_user(claims: &TokenClaims, user: &str) -> Result<String, GraphError> {
    let me = user.eq_ignore_ascii_case("me");
    if !claims.is_delegated() {
        return if me {
            Err(GraphError::MeNeedsDelegated)
        } else {
            Ok(user.to_string())
        };
    }
    let own = me
        || claims.oid.eq_ignore_ascii_case(user)
        || claims
            .upn
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(user));
    if own {
        Ok(claims.oid.clone())
    } else {
        Err(GraphError::AccessDenied)
    }
}

/// A parsed outgoing message, from JSON or MIME.
struct Outgoing {
    from: String,
    to: Vec<String>,
    subject: String,
    message_id: Option<String>,
    idempotency_key: Option<String>,
}

fn send_mail(
    ctx: &mut Ctx<'_>,
    request: &HttpRequest,
    claims: &TokenClaims,
    user: &str,
) -> HttpResponse {
    let user = match reachable_user(claims, user) {
        Ok(user) => user,
        Err(error) => return err(ctx, error),
    };
    if !has_role(claims, &["Mail.Send"]) {
        return err(ctx, GraphError::AccessDenied);
    }
    let Some(mailbox) = ctx.directory.mailbox(&claims.tid, &user) else {
        return err_with(ctx, GraphError::UnknownUser, "user", &user);
    };
    let mailbox_upn = mailbox.upn.clone();
    let is_mime = header(request, "content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/plain"));
    let parsed = if is_mime {
        parse_mime(request.body())
    } else {
        parse_json(request.body())
    };
    let outgoing = match parsed {
        Ok(outgoing) => outgoing,
        Err(error) => return err(ctx, error),
    };
    if claims.is_delegated()
        && !outgoing.from.is_empty()
        && !outgoing.from.eq_ignore_ascii_case(&mailbox_upn)
    {
        return err(ctx, GraphError::SendAsDenied);
    }
    let key = format!("{}|{}", claims.appid, mailbox_upn.to_ascii_lowercase());
    if !ctx.config.limits_off {
        match ctx
            .in_flight
            .try_acquire(&key, ctx.config.mailbox_concurrency)
        {
            Some(slot) => ctx.held = Some(slot),
            None => return err(ctx, GraphError::MailboxConcurrency),
        }
    }
    ctx.delay = ctx.config.send_mail_latency;
    let message = SentMessage {
        via: SentVia::Graph,
        at: ctx.now,
        accepted_at: ctx.now,
        message_id: outgoing.message_id,
        idempotency_key: outgoing.idempotency_key,
        from: if outgoing.from.is_empty() {
            mailbox_upn.clone()
        } else {
            outgoing.from
        },
        to: outgoing.to,
        subject: outgoing.subject,
        raw: request.body().clone(),
    };
    ctx.directory
        .mailbox_mut(&claims.tid, &mailbox_upn)
        .expect("the mailbox was found under the same lock")
        .record_sent(message);
    match ctx.fail_after_delivery.take() {
        Some((reply, retry_after)) => catalogue_reply(reply, &ctx.vars, retry_after.as_deref()),
        None => wire::graph_ok(202, None, &[], &ctx.vars),
    }
}

/// A property of a JSON object, its name matched without regard to case as Graph matches it
/// (`msgraph-sdk` sends the action's parameters as `Message` and `SaveToSentItems`).
fn property<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn parse_json(body: &[u8]) -> Result<Outgoing, GraphError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| GraphError::UnreadableJson)?;
    let message = property(&value, "message")
        .filter(|m| m.is_object())
        .ok_or(GraphError::UnreadableJson)?;
    let text = |v: &Value, name: &str| {
        property(v, name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let address = |v: &Value| property(v, "emailAddress").and_then(|e| text(e, "address"));
    let to: Vec<String> = ["toRecipients", "ccRecipients", "bccRecipients"]
        .iter()
        .filter_map(|k| property(message, k).and_then(Value::as_array))
        .flatten()
        .filter_map(address)
        .collect();
    if to.is_empty() {
        return Err(GraphError::InvalidRecipients);
    }
    let headers = property(message, "internetMessageHeaders").and_then(Value::as_array);
    let idempotency_key = headers.into_iter().flatten().find_map(|h| {
        let name = text(h, "name")?;
        name.eq_ignore_ascii_case(mime::IDEMPOTENCY_HEADER)
            .then(|| text(h, "value"))?
    });
    Ok(Outgoing {
        from: property(message, "from")
            .and_then(address)
            .unwrap_or_default(),
        to,
        subject: text(message, "subject").unwrap_or_default(),
        message_id: text(message, "internetMessageId"),
        idempotency_key,
    })
}

fn parse_mime(body: &[u8]) -> Result<Outgoing, GraphError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mime = STANDARD
        .decode(compact)
        .map_err(|_| GraphError::InvalidBase64Mime)?;
    let fields = mime::header_fields(&mime);
    let to: Vec<String> = ["to", "cc", "bcc"]
        .iter()
        .filter_map(|n| mime::field(&fields, n))
        .flat_map(|v| v.split(',').map(mime::bare_address).collect::<Vec<_>>())
        .filter(|a| !a.is_empty())
        .collect();
    if to.is_empty() {
        return Err(GraphError::InvalidRecipients);
    }
    Ok(Outgoing {
        from: mime::field(&fields, "from")
            .map(|f| mime::bare_address(&f))
            .unwrap_or_default(),
        to,
        subject: mime::field(&fields, "subject").unwrap_or_default(),
        message_id: mime::field(&fields, "message-id"),
        idempotency_key: mime::field(&fields, mime::IDEMPOTENCY_HEADER),
    })
}

/// `Prefer: odata.maxpagesize=N`, if the client sent it.
fn preferred_page_size(request: &HttpRequest) -> Option<usize> {
    header(request, "prefer").and_then(|p| {
        p.split(',').find_map(|part| {
            part.trim()
                .strip_prefix("odata.maxpagesize=")?
                .trim()
                .parse()
                .ok()
        })
    })
}

/// The delta request's state token, in one pass over the query: a `$skiptoken` wins over a
/// `$deltatoken`; an empty one is none (the first round).
fn state_token(request: &HttpRequest) -> Option<std::borrow::Cow<'_, str>> {
    let mut token = None;
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match &*key {
            "$skiptoken" => {
                token = Some(value);
                break;
            }
            "$deltatoken" if token.is_none() => token = Some(value),
            _ => {}
        }
    }
    token.filter(|t| !t.is_empty())
}

#[expect(
    clippy::too_many_lines,
    reason = "the request checked in the order Graph checks it, then the page"
)]
fn delta(
    ctx: &mut Ctx<'_>,
    request: &HttpRequest,
    claims: &TokenClaims,
    user: &str,
    folder: &str,
) -> HttpResponse {
    let path_user = user;
    let user = match reachable_user(claims, user) {
        Ok(user) => user,
        Err(error) => return err(ctx, error),
    };
    if !has_role(
        claims,
        &["Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic.All"],
    ) {
        return err(ctx, GraphError::AccessDenied);
    }
    let Some(mailbox) = ctx.directory.mailbox(&claims.tid, &user) else {
        return err_with(ctx, GraphError::UnknownUser, "user", &user);
    };
    let folder = folder
        .trim_start_matches("mailFolders('")
        .trim_end_matches("')");
    if !folder.eq_ignore_ascii_case("inbox") {
        return err(ctx, GraphError::UnknownFolder);
    }
    let settings = wire::graph_delta_settings();
    let prefer = preferred_page_size(request);
    let page_size: usize = prefer
        .unwrap_or(settings.default_page_size)
        .clamp(1, settings.max_page_size);
    let token = state_token(request);
    let max_age = ctx
        .directory
        .tenant(&claims.tid)
        .map(|t| t.settings.delta_token_max_age)
        .unwrap_or_default();
    let base = DeltaBase {
        graph: &ctx.config.endpoints.graph_base,
        user: path_user,
        folder,
    };
    let page = match mailbox.delta(token.as_deref(), page_size, ctx.now, max_age) {
        Ok(page) => page,
        Err(crate::tenant::DeltaError::Malformed) => {
            return err_with(ctx, GraphError::UnknownSegment, "segment", "delta");
        }
        Err(crate::tenant::DeltaError::SyncStateNotFound) => {
            let vars = ctx
                .vars
                .clone()
                .set("generation", mailbox.inbox().len().to_string());
            let location = format!("{base}?$deltatoken=");
            return wire::graph_error(GraphError::SyncStateNotFound, &vars, Some(&location), None);
        }
    };
    let body = DeltaPage {
        context: Shown(MetadataContext(&ctx.config.endpoints.graph_base)),
        next_link: page.skip_token.as_deref().map(|token| {
            Shown(Link {
                base: &base,
                key: "$skiptoken",
                token,
            })
        }),
        delta_link: page.delta_token.as_deref().map(|token| {
            Shown(Link {
                base: &base,
                key: "$deltatoken",
                token,
            })
        }),
        value: page
            .messages
            .iter()
            .map(|m| MessageJson::new(m, &mailbox.upn))
            .collect(),
    };
    let extra = match prefer {
        Some(_) => vec![(
            "Preference-Applied",
            format!("odata.maxpagesize={page_size}"),
        )],
        None => Vec::new(),
    };
    wire::graph_ok_json(200, &body, &extra, &ctx.vars)
}

/// A delta page, its members in Graph's order.
#[derive(Serialize)]
struct DeltaPage<'a> {
    #[serde(rename = "@odata.context")]
    context: Shown<MetadataContext<'a>>,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<Shown<Link<'a>>>,
    #[serde(rename = "@odata.deltaLink", skip_serializing_if = "Option::is_none")]
    delta_link: Option<Shown<Link<'a>>>,
    value: Vec<MessageJson<'a>>,
}

/// A string member written straight from its `Display` (links are built per request; this
/// spares a `String` for each).
struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// `{graph}/v1.0/$metadata#Collection(message)`.
struct MetadataContext<'a>(&'a str);

impl fmt::Display for MetadataContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/v1.0/$metadata#Collection(message)", self.0)
    }
}

/// `{base}?{key}={token}`: the next page, or where the next sync starts.
struct Link<'a> {
    base: &'a DeltaBase<'a>,
    key: &'static str,
    token: &'a str,
}

impl fmt::Display for Link<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}?{}={}", self.base, self.key, self.token)
    }
}

/// `{graph}/v1.0/users/{user}/mailFolders/{folder}/messages/delta`.
struct DeltaBase<'a> {
    graph: &'a str,
    user: &'a str,
    folder: &'a str,
}

impl fmt::Display for DeltaBase<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.user == "me" {
            return write!(
                f,
                "{}/v1.0/me/mailFolders/{}/messages/delta",
                self.graph, self.folder
            );
        }
        write!(
            f,
            "{}/v1.0/users/{}/mailFolders/{}/messages/delta",
            self.graph, self.user, self.folder
        )
    }
}

/// A message as a delta page lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageJson<'a> {
    #[serde(rename = "@odata.type")]
    odata_type: &'static str,
    #[serde(rename = "@odata.etag")]
    odata_etag: String,
    id: &'a str,
    created_date_time: String,
    last_modified_date_time: String,
    received_date_time: String,
    sent_date_time: String,
    internet_message_id: &'a str,
    subject: &'a str,
    is_read: bool,
    from: Recipient<'a>,
    to_recipients: [Recipient<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Recipient<'a> {
    email_address: EmailAddress<'a>,
}

#[derive(Serialize)]
struct EmailAddress<'a> {
    name: &'a str,
    address: &'a str,
}

impl<'a> MessageJson<'a> {
    fn new(message: &'a InboxMessage, upn: &'a str) -> MessageJson<'a> {
        let at = graph_time(message.received_at);
        let mailbox = |address: &'a str| Recipient {
            email_address: EmailAddress {
                name: address,
                address,
            },
        };
        MessageJson {
            odata_type: "#microsoft.graph.message",
            odata_etag: format!("W/\"CQAAABYAAAD{:08}\"", message.seq),
            id: &message.id,
            created_date_time: at.clone(),
            last_modified_date_time: at.clone(),
            received_date_time: at.clone(),
            sent_date_time: at,
            internet_message_id: &message.internet_message_id,
            subject: &message.subject,
            is_read: false,
            from: mailbox(&message.from),
            to_recipients: [mailbox(upn)],
        }
    }
}

static GRAPH_TIME: crate::time::Pattern = crate::time::Pattern::new("%Y-%m-%dT%H:%M:%SZ");
static DIRECTORY_SECONDS: crate::time::Pattern = crate::time::Pattern::new("%Y-%m-%dT%H:%M:%S");

fn graph_time(at: DateTime<Utc>) -> String {
    GRAPH_TIME.format(at)
}

/// Directory timestamps carry seven fractional digits (addPassword's documented sample).
fn directory_time(at: DateTime<Utc>) -> String {
    let ticks = at.timestamp_subsec_nanos() / 100;
    format!("{}.{ticks:07}Z", DIRECTORY_SECONDS.format(at))
}

/// `applications/{id}`, `applications(appId='{id}')`, or `None` for the collection.
fn application_ref(segments: &[Segment<'_>]) -> Option<String> {
    let first = segments.first()?;
    if let Some(rest) = first.strip_prefix("applications(appId=") {
        return Some(rest.trim_end_matches(')').trim_matches('\'').to_string());
    }
    segments.get(1).map(|s| s.to_string())
}

fn may_read(claims: &TokenClaims, app: &App) -> bool {
    has_role(
        claims,
        &["Application.Read.All", "Application.ReadWrite.All"],
    ) || (has_role(claims, &["Application.ReadWrite.OwnedBy"]) && app.app_id == claims.appid)
}

fn may_write(claims: &TokenClaims, app: &App) -> bool {
    has_role(claims, &["Application.ReadWrite.All"])
        || (has_role(claims, &["Application.ReadWrite.OwnedBy"]) && app.app_id == claims.appid)
}

/// An application as Graph shows it; `with_keys` puts each certificate's `key` in (Graph
/// returns it only for one application read with `$select=keyCredentials`, else null).
fn application_json(app: &App, with_keys: bool) -> Value {
    let credentials: Vec<Value> = app
        .credentials
        .iter()
        .map(|c| {
            json!({
                "customKeyIdentifier": null,
                "displayName": c.display_name,
                "endDateTime": directory_time(c.end),
                "hint": c.hint,
                "keyId": c.key_id,
                "secretText": null,
                "startDateTime": directory_time(c.start),
            })
        })
        .collect();
    let keys: Vec<Value> = app
        .key_credentials
        .iter()
        .map(|k| {
            json!({
                "customKeyIdentifier": k.thumbprints.sha1_hex(),
                "displayName": k.display_name,
                "endDateTime": directory_time(k.end),
                "key": with_keys.then(|| base64::engine::general_purpose::STANDARD.encode(&k.cert_der)),
                "keyId": k.key_id,
                "startDateTime": directory_time(k.start),
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
            })
        })
        .collect();
    json!({
        "id": app.object_id,
        "appId": app.app_id,
        "displayName": app.display_name,
        "keyCredentials": keys,
        "passwordCredentials": credentials,
    })
}

fn get_applications(
    ctx: &mut Ctx<'_>,
    request: &HttpRequest,
    claims: &TokenClaims,
    segments: &[Segment<'_>],
) -> HttpResponse {
    let base = &ctx.config.endpoints.graph_base;
    let single = application_ref(segments);
    let Some(id) = single else {
        let filter = query(request, "$filter").unwrap_or_default().into_owned();
        let Some(app_id) = parse_app_id_filter(&filter) else {
            return err(ctx, GraphError::InvalidFilter);
        };
        if !has_role(
            claims,
            &[
                "Application.Read.All",
                "Application.ReadWrite.All",
                "Application.ReadWrite.OwnedBy",
            ],
        ) {
            return err(ctx, GraphError::DirectoryDenied);
        }
        let apps: Vec<Value> = ctx
            .directory
            .app(&claims.tid, &app_id)
            .filter(|a| a.app_id.eq_ignore_ascii_case(&app_id))
            .into_iter()
            .map(|app| application_json(app, false))
            .collect();
        let body =
            json!({"@odata.context": format!("{base}/v1.0/$metadata#applications"), "value": apps});
        return wire::graph_ok(200, Some(&body), &[], &ctx.vars);
    };
    let Some(app) = ctx.directory.app(&claims.tid, &id) else {
        return err_with(ctx, GraphError::ApplicationNotFound, "id", &id);
    };
    if !may_read(claims, app) {
        return err(ctx, GraphError::DirectoryDenied);
    }
    let mut body = serde_json::Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{base}/v1.0/$metadata#applications/$entity")),
    );
    let with_keys = query(request, "$select")
        .is_some_and(|select| select.split(',').any(|f| f.trim() == "keyCredentials"));
    if let Value::Object(fields) = application_json(app, with_keys) {
        body.extend(fields);
    }
    wire::graph_ok(200, Some(&Value::Object(body)), &[], &ctx.vars)
}

/// `appId eq '...'`, the one filter the mock supports.
fn parse_app_id_filter(filter: &str) -> Option<String> {
    let rest = filter.trim().strip_prefix("appId")?.trim_start();
    let rest = rest.strip_prefix("eq")?.trim();
    let value = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    (!value.is_empty() && !value.contains('\'')).then(|| value.to_string())
}

fn writable_app(
    ctx: &Ctx<'_>,
    claims: &TokenClaims,
    segments: &[Segment<'_>],
) -> Result<String, Box<HttpResponse>> {
    let id = application_ref(segments).unwrap_or_default();
    let Some(app) = ctx.directory.app(&claims.tid, &id) else {
        return Err(Box::new(err_with(
            ctx,
            GraphError::ApplicationNotFound,
            "id",
            &id,
        )));
    };
    if !may_write(claims, app) {
        return Err(Box::new(err(ctx, GraphError::DirectoryDenied)));
    }
    Ok(app.app_id.clone())
}

fn add_password(
    ctx: &mut Ctx<'_>,
    request: &HttpRequest,
    claims: &TokenClaims,
    segments: &[Segment<'_>],
) -> HttpResponse {
    let app_id = match writable_app(ctx, claims, segments) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let body: Value = if request.body().is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(request.body()) {
            Ok(value) => value,
            Err(_) => return err(ctx, GraphError::InvalidRequestBody),
        }
    };
    let spec = body.get("passwordCredential").cloned().unwrap_or(json!({}));
    let time = |key: &str| -> Result<Option<DateTime<Utc>>, ()> {
        match spec.get(key).and_then(Value::as_str) {
            None => Ok(None),
            Some(text) => text.parse::<DateTime<Utc>>().map(Some).map_err(|_| ()),
        }
    };
    let (Ok(start), Ok(end)) = (time("startDateTime"), time("endDateTime")) else {
        return err(ctx, GraphError::InvalidRequestBody);
    };
    let start = start.unwrap_or(ctx.now);
    // addPassword defaults endDateTime to two years after startDateTime; a start so late that
    // there is no such instant is a body Graph cannot read either.
    let Some(end) = end.or_else(|| start.checked_add_signed(chrono::TimeDelta::days(730))) else {
        return err(ctx, GraphError::InvalidRequestBody);
    };
    if let Some(refused) = policy_refusal(ctx, &claims.tid, start, end) {
        return refused;
    }
    let name = spec
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (credential, secret) = ctx
        .directory
        .generate_secret(&claims.tid, &app_id, &name, start, end, ctx.now)
        .expect("the app was found under the same lock");
    let base = &ctx.config.endpoints.graph_base;
    let body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#microsoft.graph.passwordCredential"),
        "customKeyIdentifier": null,
        "displayName": credential.display_name,
        "endDateTime": directory_time(credential.end),
        "hint": credential.hint,
        "keyId": credential.key_id,
        "secretText": secret,
        "startDateTime": directory_time(credential.start),
    });
    wire::graph_ok(200, Some(&body), &[], &ctx.vars)
}

/// The tenant's app management policy's refusal of a new secret from `start` to `end`, if it
/// refuses it (the default policy applies to every app here: no per-app policies).
fn policy_refusal(
    ctx: &Ctx<'_>,
    tenant: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<HttpResponse> {
    let policy = ctx.directory.tenant(tenant)?.settings.app_policy.as_ref()?;
    let error = match policy.refuses(start, end)? {
        PolicyRefusal::SecretsNotAllowed => GraphError::CredentialTypePolicy,
        PolicyRefusal::LifetimeTooLong => GraphError::CredentialLifetimePolicy,
    };
    Some(err_with(ctx, error, "policy_id", &policy.id))
}

fn remove_password(
    ctx: &mut Ctx<'_>,
    request: &HttpRequest,
    claims: &TokenClaims,
    segments: &[Segment<'_>],
) -> HttpResponse {
    let app_id = match writable_app(ctx, claims, segments) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let key_id = serde_json::from_slice::<Value>(request.body())
        .ok()
        .and_then(|v| v.get("keyId").and_then(Value::as_str).map(str::to_string));
    let Some(key_id) = key_id else {
        return err(ctx, GraphError::InvalidRequestBody);
    };
    if ctx.directory.remove_secret(&claims.tid, &app_id, &key_id) {
        wire::graph_ok(204, None, &[], &ctx.vars)
    } else {
        err_with(ctx, GraphError::KeyNotFound, "key_id", &key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_from_paths() {
        assert_eq!(operation("/v1.0/users/a%40b/sendMail"), "send-mail");
        assert_eq!(
            operation("/v1.0/users/u/mailFolders/inbox/messages/delta"),
            "delta"
        );
        assert_eq!(operation("/v1.0/applications(appId='x')"), "applications");
        assert_eq!(
            operation("/v1.0/applications/x/addPassword"),
            "add-password"
        );
        assert_eq!(
            operation("/v1.0/applications(appId='x')/removePassword"),
            "remove-password"
        );
        assert_eq!(operation("/v1.0/me"), "other");
    }

    #[test]
    fn app_id_filter_parses_only_the_supported_form() {
        assert_eq!(
            parse_app_id_filter("appId eq 'abc'").as_deref(),
            Some("abc")
        );
        assert_eq!(parse_app_id_filter("displayName eq 'abc'"), None);
        assert_eq!(parse_app_id_filter("appId eq abc"), None);
    }

    #[test]
    fn mime_headers_give_envelope_and_keys() {
        let mime = "From: A <a@x>\r\nTo: b@y, C <c@z>\r\nSubject: Hi\r\nMessage-ID: <1@x>\r\nX-Maildrill-Idempotency-Key: k1\r\n\r\nbody";
        let parsed = parse_mime(STANDARD.encode(mime).as_bytes()).ok().unwrap();
        assert_eq!(parsed.from, "a@x");
        assert_eq!(parsed.to, ["b@y", "c@z"]);
        assert_eq!(parsed.message_id.as_deref(), Some("<1@x>"));
        assert_eq!(parsed.idempotency_key.as_deref(), Some("k1"));
        assert!(matches!(
            parse_mime(b"!!!"),
            Err(GraphError::InvalidBase64Mime)
        ));
    }
}
