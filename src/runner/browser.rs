//! The user's browser in the authorization-code flow: the harness opens a subject's
//! authorization request at the authorize endpoint as the user who connects, and hands back
//! where the endpoint redirected. Its requests go through the mocks' faults and journal.

use std::time::Duration;

use crate::mock::{Action, HttpMocks};
use crate::subject::{Browser, SubjectError};
use crate::time::{ClockExt as _, SharedClock};

/// How long the browser waits for the sign-in page before the user gives up.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A browser in which `upn` signs in: a request without `login_hint` gets one, as the user
/// picks that account.
pub(super) fn browser(mocks: HttpMocks, clock: SharedClock, upn: String) -> Browser {
    Browser::new(move |url| {
        let (mocks, clock, upn) = (mocks.clone(), clock.clone(), upn.clone());
        Box::pin(async move { open(&mocks, &clock, &upn, &url).await })
    })
}

/// One GET of the authorization request; the redirect's `Location`, or what went wrong.
async fn open(
    mocks: &HttpMocks,
    clock: &SharedClock,
    upn: &str,
    url: &str,
) -> Result<String, SubjectError> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !parsed.query_pairs().any(|(k, _)| k == "login_hint") {
        parsed.query_pairs_mut().append_pair("login_hint", upn);
    }
    let target = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let request = http::Request::get(target)
        .header(http::header::HOST, parsed.host_str().unwrap_or_default())
        .body(bytes::Bytes::new())
        .map_err(|e| format!("the browser could not build a request for `{url}`: {e}"))?;
    let reply = mocks.handle(request);
    let response = match reply.action {
        Action::Respond(response) => response,
        Action::Hang => {
            clock.sleep(PAGE_TIMEOUT).await;
            return Err("the sign-in page never loaded".into());
        }
        Action::Truncate(..) | Action::Reset => {
            clock.sleep(reply.delay).await;
            return Err("the sign-in page's connection was cut".into());
        }
    };
    clock.sleep(reply.delay).await;
    let location = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok());
    match location {
        Some(location) => Ok(location.to_string()),
        None => Err(format!(
            "the sign-in stopped on a page ({}) instead of redirecting back",
            response.status()
        )
        .into()),
    }
}
