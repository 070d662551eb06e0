//! The mock Graph driven by reqwest over the socket wiring with TLS, as a real client sees it.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use common::*;
use maildrill::tenant::{Resource, demo};
use maildrill::{Directory, Seed, Sim, SocketOptions, TenantSpec};
use serde_json::{Value, json};

struct Served {
    base: String,
    client: reqwest::Client,
    sim: Sim,
}

async fn serve(spec: TenantSpec) -> Served {
    let sim = Sim::builder()
        .start(at("2025-02-14T11:00:00Z"))
        .seed(Seed(3))
        .tenant(spec)
        .sockets(SocketOptions::default())
        .build()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Served {
        base: sim.socket_base().unwrap().to_string(),
        client,
        sim,
    }
}

fn spec() -> TenantSpec {
    tenant(at("2025-03-01T00:00:00Z"))
}

impl Served {
    async fn token(&self, scope: &str) -> String {
        let response = self
            .client
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.base,
                demo::TENANT_ID
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", demo::APP_ID),
                ("client_secret", SECRET),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        Directory::lock(self.sim.directory())
    }

    fn send_mail_url(&self) -> String {
        format!("{}/v1.0/users/{}/sendMail", self.base, demo::MAILBOX)
    }

    fn sent(&self) -> Vec<(String, Vec<String>)> {
        let directory = self.directory();
        let mailbox = directory.mailbox(demo::TENANT_ID, demo::MAILBOX).unwrap();
        mailbox
            .sent()
            .map(|m| (m.subject.clone(), m.to.clone()))
            .collect()
    }
}

fn message(subject: &str) -> Value {
    json!({"message": {
        "subject": subject,
        "body": {"contentType": "Text", "content": "hello"},
        "toRecipients": [{"emailAddress": {"address": "customer@example.com"}}],
        "internetMessageHeaders": [{"name": "X-Maildrill-Idempotency-Key", "value": "k-1"}]
    }, "saveToSentItems": false})
}

async fn error_code(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json::<Value>().await.unwrap())
}

#[tokio::test]
async fn send_mail_json_is_202_with_empty_body_and_lands_in_the_mailbox() {
    let served = serve(spec()).await;
    let token = served.token(GRAPH_SCOPE).await;
    let response = served
        .client
        .post(served.send_mail_url())
        .bearer_auth(&token)
        .json(&message("Invoice 7"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(response.headers().get("request-id").is_some());
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(
        served.sent(),
        [(
            "Invoice 7".to_string(),
            vec!["customer@example.com".to_string()]
        )]
    );
    let directory = served.directory();
    let sent = directory
        .mailbox(demo::TENANT_ID, demo::MAILBOX)
        .unwrap()
        .sent()
        .next()
        .cloned()
        .unwrap();
    assert_eq!(sent.idempotency_key.as_deref(), Some("k-1"));
}

#[tokio::test]
async fn send_mail_accepts_base64_mime_and_refuses_bad_base64() {
    use base64::Engine as _;
    let served = serve(spec()).await;
    let token = served.token(GRAPH_SCOPE).await;
    let mime = "From: mailman@contoso.onmicrosoft.com\r\nTo: a@example.com\r\nSubject: MIME one\r\nMessage-ID: <m1@contoso>\r\n\r\nhi\r\n";
    let body = base64::engine::general_purpose::STANDARD.encode(mime);
    let ok = served
        .client
        .post(served.send_mail_url())
        .bearer_auth(&token)
        .header("Content-Type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let bad = served
        .client
        .post(served.send_mail_url())
        .bearer_auth(&token)
        .header("Content-Type", "text/plain")
        .body("%%%not base64")
        .send()
        .await
        .unwrap();
    let (status, body) = error_code(bad).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {"code": "ErrorMimeContentInvalidBase64String", "message": "Invalid base64 string for MIME content."}})
    );
    assert_eq!(served.sent().len(), 1);
}

#[tokio::test]
async fn expired_token_is_401_invalid_authentication_token_with_www_authenticate() {
    let served = serve(spec()).await;
    let stale = served
        .directory()
        .issue_token(
            demo::TENANT_ID,
            demo::APP_ID,
            Resource::Graph,
            at("2025-02-14T09:00:00Z"),
        )
        .unwrap();
    let response = served
        .client
        .post(served.send_mail_url())
        .bearer_auth(&stale.value)
        .json(&message("x"))
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer realm=\"\", authorization_uri="),
        "{challenge}"
    );
    let (status, body) = error_code(response).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(
        body["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    let inner = body["error"]["innerError"].as_object().unwrap();
    assert_eq!(
        inner.keys().collect::<Vec<_>>(),
        ["date", "request-id", "client-request-id"]
    );
    assert!(served.sent().is_empty());
}

#[tokio::test]
async fn exchange_token_and_missing_role_are_refused() {
    let mut spec = spec();
    spec.apps[0].roles = vec![(Resource::Graph, vec!["Mail.Read".into()])];
    let served = serve(spec).await;
    let smtp_token = served.token(EXCHANGE_SCOPE).await;
    let response = served
        .client
        .post(served.send_mail_url())
        .bearer_auth(&smtp_token)
        .json(&message("x"))
        .send()
        .await
        .unwrap();
    let (status, body) = error_code(response).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (
            401,
            Some("Access token validation failure. Invalid audience.")
        )
    );
    let graph_token = served.token(GRAPH_SCOPE).await;
    let response = served
        .client
        .post(served.send_mail_url())
        .bearer_auth(&graph_token)
        .json(&message("x"))
        .send()
        .await
        .unwrap();
    let (status, body) = error_code(response).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"error": {"code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again."}})
    );
}

#[tokio::test]
async fn malformed_json_and_no_recipients_are_400() {
    let served = serve(spec()).await;
    let token = served.token(GRAPH_SCOPE).await;
    let response = served
        .client
        .post(served.send_mail_url())
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = error_code(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BadRequest"))
    );
    let response = served
        .client
        .post(served.send_mail_url())
        .bearer_auth(&token)
        .json(&json!({"message": {"subject": "x"}}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_code(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("ErrorInvalidRecipients"))
    );
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one sync story told in order: pages, delta link, 410, resync"
)]
async fn delta_pages_with_next_and_delta_links_then_410_after_the_sync_state_is_gone() {
    let served = serve(spec()).await;
    {
        let mut directory = served.directory();
        let now = at("2025-02-14T10:00:00Z");
        for i in 0..5 {
            let id = directory.next_message_id();
            directory
                .mailbox_mut(demo::TENANT_ID, demo::MAILBOX)
                .unwrap()
                .deliver(id, now, "c@example.com", &format!("inbound {i}"));
        }
    }
    let token = served.token(GRAPH_SCOPE).await;
    let mut url = format!(
        "{}/v1.0/users/{}/mailFolders/inbox/messages/delta",
        served.base,
        demo::MAILBOX
    );
    let mut subjects = Vec::new();
    let delta_link = loop {
        let response = served
            .client
            .get(&url)
            .bearer_auth(&token)
            .header("Prefer", "odata.maxpagesize=2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["preference-applied"],
            "odata.maxpagesize=2"
        );
        let page: Value = response.json().await.unwrap();
        subjects.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["subject"].as_str().unwrap().to_string()),
        );
        if let Some(next) = page["@odata.nextLink"].as_str() {
            url = next.to_string();
        } else {
            break page["@odata.deltaLink"].as_str().unwrap().to_string();
        }
    };
    assert_eq!(
        subjects,
        [
            "inbound 0",
            "inbound 1",
            "inbound 2",
            "inbound 3",
            "inbound 4"
        ]
    );
    let page: Value = served
        .client
        .get(&delta_link)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page["value"].as_array().unwrap().is_empty());
    served
        .directory()
        .mailbox_mut(demo::TENANT_ID, demo::MAILBOX)
        .unwrap()
        .reset_sync_state();
    let response = served
        .client
        .get(&delta_link)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.ends_with("/messages/delta?$deltatoken="),
        "{location}"
    );
    let (status, body) = error_code(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("SyncStateNotFound"))
    );
    let resync: Value = served
        .client
        .get(&location)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resync["value"].as_array().unwrap().len(), 5);
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one story told in order: list, add, use, remove"
)]
async fn applications_api_lists_credentials_adds_and_removes_passwords() {
    let mut spec = spec();
    spec.settings.propagation_delay = std::time::Duration::ZERO;
    let served = serve(spec).await;
    let token = served.token(GRAPH_SCOPE).await;
    let list_url = format!(
        "{}/v1.0/applications?$filter=appId eq '{}'",
        served.base,
        demo::APP_ID
    );
    let list: Value = served
        .client
        .get(&list_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credentials = list["value"][0]["passwordCredentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 1);
    assert_eq!(
        credentials[0]["endDateTime"],
        "2025-03-01T00:00:00.0000000Z"
    );
    assert_eq!(credentials[0]["secretText"], Value::Null);
    assert_eq!(credentials[0]["hint"], "Mlm");

    let add_url = format!(
        "{}/v1.0/applications(appId='{}')/addPassword",
        served.base,
        demo::APP_ID
    );
    let added: Value = served
        .client
        .post(&add_url)
        .bearer_auth(&token)
        .json(&json!({"passwordCredential": {"displayName": "rotated"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = added["secretText"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 40);
    let key_id = added["keyId"].as_str().unwrap().to_string();
    let token_response = served
        .client
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            served.base,
            demo::TENANT_ID
        ))
        .basic_auth(demo::APP_ID, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", GRAPH_SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(token_response.status(), 200);

    let object_url = format!("{}/v1.0/applications/{}", served.base, demo::APP_OBJECT_ID);
    let app: Value = served
        .client
        .get(&object_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(app["passwordCredentials"].as_array().unwrap().len(), 2);
    let remove = served
        .client
        .post(format!("{object_url}/removePassword"))
        .bearer_auth(&token)
        .json(&json!({"keyId": key_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(remove.status(), 204);
    let again = served
        .client
        .post(format!("{object_url}/removePassword"))
        .bearer_auth(&token)
        .json(&json!({"keyId": key_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    let journal = served.sim.journal().render();
    assert!(
        !journal.contains(&secret),
        "the generated secret leaked into the journal"
    );
}
