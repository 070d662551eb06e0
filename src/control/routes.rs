//! The control API's routes: one table that both the router and the OpenAPI document read,
//! so the document cannot name a route the API lacks or miss one it has.

use http::Method;

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET openapi.json`.
    OpenApi,
    /// `GET clock`.
    Clock,
    /// `POST clock/advance`.
    AdvanceClock,
    /// `GET apps`.
    Apps,
    /// `POST apps/{app}/secrets`.
    AddSecret,
    /// `POST apps/{app}/secrets/{key}/expire`.
    ExpireSecret,
    /// `DELETE apps/{app}/secrets/{key}`.
    RemoveSecret,
    /// `GET faults`.
    Faults,
    /// `POST faults`.
    InjectFault,
    /// `DELETE faults`.
    ClearFaults,
    /// `DELETE faults/{id}`.
    ClearFault,
    /// `GET journal`.
    Journal,
    /// `GET mailboxes/{upn}/messages`.
    Messages,
    /// `GET alerts`.
    Alerts,
    /// `POST reset`.
    Reset,
    /// `POST users/{upn}/events`.
    UserEvent,
    /// `POST tenants/{tenant}/events`.
    TenantEvent,
}

/// One route: method, path under the base (`{name}` for a segment), what it does.
#[derive(Debug, Clone)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path under the base, segments separated by `/`, `{name}` for a parameter.
    pub path: &'static str,
    /// What it does.
    pub op: Op,
    /// The OpenAPI `operationId`.
    pub id: &'static str,
    /// The OpenAPI summary.
    pub summary: &'static str,
    /// The success status.
    pub status: u16,
}

const fn route(
    method: Method,
    path: &'static str,
    op: Op,
    id: &'static str,
    status: u16,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        op,
        id,
        summary,
        status,
    }
}

/// Every route of the API.
pub const ROUTES: [Route; 17] = [
    route(
        Method::GET,
        "openapi.json",
        Op::OpenApi,
        "openapi",
        200,
        "This document.",
    ),
    route(
        Method::GET,
        "clock",
        Op::Clock,
        "getClock",
        200,
        "The mocks' calendar instant.",
    ),
    route(
        Method::POST,
        "clock/advance",
        Op::AdvanceClock,
        "advanceClock",
        200,
        "Moves the mocks' calendar forward by a duration or to an instant.",
    ),
    route(
        Method::GET,
        "apps",
        Op::Apps,
        "listApps",
        200,
        "Every app registration with its secrets' metadata (never their values).",
    ),
    route(
        Method::POST,
        "apps/{app}/secrets",
        Op::AddSecret,
        "addSecret",
        201,
        "Adds a secret (generated, or the value given); its text is in this response only.",
    ),
    route(
        Method::POST,
        "apps/{app}/secrets/{key}/expire",
        Op::ExpireSecret,
        "expireSecret",
        200,
        "Ends a secret now.",
    ),
    route(
        Method::DELETE,
        "apps/{app}/secrets/{key}",
        Op::RemoveSecret,
        "removeSecret",
        204,
        "Removes a secret.",
    ),
    route(
        Method::GET,
        "faults",
        Op::Faults,
        "listFaults",
        200,
        "The faults in force.",
    ),
    route(
        Method::POST,
        "faults",
        Op::InjectFault,
        "injectFault",
        201,
        "Injects a fault of the scenario vocabulary.",
    ),
    route(
        Method::DELETE,
        "faults",
        Op::ClearFaults,
        "clearFaults",
        204,
        "Clears every fault.",
    ),
    route(
        Method::DELETE,
        "faults/{id}",
        Op::ClearFault,
        "clearFault",
        204,
        "Clears one fault.",
    ),
    route(
        Method::GET,
        "journal",
        Op::Journal,
        "readJournal",
        200,
        "Requests the mocks served, oldest first, filtered and paginated.",
    ),
    route(
        Method::GET,
        "mailboxes/{upn}/messages",
        Op::Messages,
        "listMessages",
        200,
        "The mail the mocks accepted from a mailbox, with each Message-ID.",
    ),
    route(
        Method::GET,
        "alerts",
        Op::Alerts,
        "listAlerts",
        200,
        "The events the alert sink received.",
    ),
    route(
        Method::POST,
        "reset",
        Op::Reset,
        "reset",
        204,
        "Back to the initial state: tenant, secrets, mailboxes, faults, journal, clock.",
    ),
    route(
        Method::POST,
        "users/{upn}/events",
        Op::UserEvent,
        "userEvent",
        204,
        "A user-level event: revoked sessions, a password reset, idle refresh tokens, MFA or Conditional Access required.",
    ),
    route(
        Method::POST,
        "tenants/{tenant}/events",
        Op::TenantEvent,
        "tenantEvent",
        204,
        "A customer tenant's event for a multi-tenant app: consent withdrawn, the app disabled or enabled.",
    ),
];

/// Why no route answers a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No route has this path.
    NotFound,
    /// Routes have this path with these methods.
    Method(Vec<Method>),
}

/// The route for `method` and `path` (under the base), with its parameters in order.
pub fn find(method: &Method, path: &str) -> Result<(Route, Vec<String>), Miss> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut allowed = Vec::new();
    for route in ROUTES {
        let Some(params) = matches(route.path, &segments) else {
            continue;
        };
        if route.method == *method {
            return Ok((route, params));
        }
        allowed.push(route.method.clone());
    }
    if allowed.is_empty() {
        Err(Miss::NotFound)
    } else {
        Err(Miss::Method(allowed))
    }
}

/// The parameters of `pattern` in `segments`, percent-decoded, if the path matches.
fn matches(pattern: &str, segments: &[&str]) -> Option<Vec<String>> {
    let parts: Vec<&str> = pattern.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, segment) in parts.iter().zip(segments) {
        if part.starts_with('{') {
            if segment.is_empty() {
                return None;
            }
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            params.push(decoded.into_owned());
        } else if part != segment {
            return None;
        }
    }
    Some(params)
}

/// The names of a route's path parameters, in order.
pub fn params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_decoded_parameters_and_methods_are_told_apart() {
        let (route, params) = find(&Method::GET, "mailboxes/ops%40contoso.com/messages").unwrap();
        assert_eq!(route.op, Op::Messages);
        assert_eq!(params, ["ops@contoso.com"]);
        let (route, params) = find(&Method::DELETE, "faults/3").unwrap();
        assert_eq!((route.op, params), (Op::ClearFault, vec!["3".to_string()]));
        assert_eq!(
            find(&Method::PUT, "faults").unwrap_err(),
            Miss::Method(vec![Method::GET, Method::POST, Method::DELETE])
        );
        assert_eq!(find(&Method::GET, "nothing").unwrap_err(), Miss::NotFound);
        assert_eq!(
            find(&Method::DELETE, "faults/").unwrap_err(),
            Miss::NotFound
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut ids: Vec<&str> = ROUTES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ROUTES.len());
    }
}
