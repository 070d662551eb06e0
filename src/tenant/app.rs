//! App registrations and their password credentials (client secrets).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::certificate::{CertificateSpec, KeyCredential};

/// The two resources a mail client asks tokens for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    /// Microsoft Graph: sendMail, delta sync, applications.
    Graph,
    /// Exchange Online: SMTP AUTH XOAUTH2.
    Exchange,
}

impl Resource {
    /// The resource URI, which is also the token's `aud` claim.
    pub fn audience(self) -> &'static str {
        match self {
            Resource::Graph => "https://graph.microsoft.com",
            Resource::Exchange => "https://outlook.office365.com",
        }
    }

    /// The resource for a client-credentials scope (`{resource}/.default`), if it is one of ours.
    pub fn from_audience(audience: &str) -> Option<Resource> {
        let audience = audience.trim_end_matches('/');
        // `https://outlook.office.com` is Exchange Online too: the delegated SMTP scope is
        // `https://outlook.office.com/SMTP.Send` (wire reference §8.6).
        [
            (Resource::Graph, "https://graph.microsoft.com"),
            (Resource::Exchange, "https://outlook.office365.com"),
            (Resource::Exchange, "https://outlook.office.com"),
        ]
        .into_iter()
        .find(|(_, uri)| uri.eq_ignore_ascii_case(audience))
        .map(|(r, _)| r)
    }

    /// The delegated permissions `{resource}/.default` stands for when a user consents: what
    /// a mail app registers (send and read mail, the signed-in user's profile; SMTP.Send).
    pub fn default_delegated(self) -> &'static [&'static str] {
        match self {
            Resource::Graph => &["Mail.Read", "Mail.Send", "User.Read"],
            Resource::Exchange => &["SMTP.Send"],
        }
    }

    /// The resource's own application id, as AADSTS50076 names it.
    pub fn app_id(self) -> &'static str {
        match self {
            Resource::Graph => "00000003-0000-0000-c000-000000000000",
            Resource::Exchange => "00000002-0000-0ff1-ce00-000000000000",
        }
    }

    /// The application roles a working mail app holds on this resource by default.
    pub fn default_roles(self) -> &'static [&'static str] {
        match self {
            Resource::Graph => &["Mail.Send", "Mail.Read", "Application.ReadWrite.OwnedBy"],
            Resource::Exchange => &["SMTP.SendAsApp"],
        }
    }
}

/// How a scenario or `serve` describes a client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The secret value the client sends.
    pub value: String,
    /// The portal's description.
    pub display_name: String,
    /// `startDateTime`.
    pub start: DateTime<Utc>,
    /// `endDateTime`.
    pub end: DateTime<Utc>,
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSpec")
            .field("value", &"[redacted]")
            .field("display_name", &self.display_name)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

/// How a scenario or `serve` describes an app registration.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// `appId`, the client id.
    pub app_id: String,
    /// The application object's `id`.
    pub object_id: String,
    /// `displayName`.
    pub display_name: String,
    /// Its client secrets.
    pub secrets: Vec<SecretSpec>,
    /// Its certificates (`keyCredentials`).
    pub certificates: Vec<CertificateSpec>,
    /// Roles granted per resource; empty means [`Resource::default_roles`].
    pub roles: Vec<(Resource, Vec<String>)>,
    /// Who may sign in (`signInAudience`).
    pub audience: SignInAudience,
    /// Registered redirect URIs (web platform), for the authorization-code flow.
    pub redirect_uris: Vec<String>,
}

/// Who may sign in to an app registration (`signInAudience`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SignInAudience {
    /// `AzureADMyOrg`: users of the home tenant only.
    #[default]
    SingleTenant,
    /// `AzureADMultipleOrgs`: users of any tenant, through `common` or `organizations`.
    MultiTenant,
}

/// An app registration inside a tenant.
#[derive(Debug, Clone)]
pub struct App {
    /// `appId`.
    pub app_id: String,
    /// The application object's `id`.
    pub object_id: String,
    /// `displayName`.
    pub display_name: String,
    /// `passwordCredentials`, in the order they were added.
    pub credentials: Vec<PasswordCredential>,
    /// `keyCredentials` (certificates), in the order they were added.
    pub key_credentials: Vec<KeyCredential>,
    /// Roles granted on each resource.
    pub roles: Vec<(Resource, BTreeSet<String>)>,
    /// Who may sign in.
    pub audience: SignInAudience,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
}

impl App {
    pub(crate) fn from_spec(spec: &AppSpec, key_ids: &mut impl FnMut() -> String) -> App {
        let mut roles: Vec<(Resource, BTreeSet<String>)> = [Resource::Graph, Resource::Exchange]
            .into_iter()
            .map(|r| (r, r.default_roles().iter().map(|s| s.to_string()).collect()))
            .collect();
        for (resource, granted) in &spec.roles {
            if let Some(entry) = roles.iter_mut().find(|(r, _)| r == resource) {
                entry.1 = granted.iter().cloned().collect();
            }
        }
        App {
            app_id: spec.app_id.clone(),
            object_id: spec.object_id.clone(),
            display_name: spec.display_name.clone(),
            credentials: spec
                .secrets
                .iter()
                .map(|s| PasswordCredential::new(s, key_ids(), s.start))
                .collect(),
            key_credentials: spec
                .certificates
                .iter()
                .map(|c| KeyCredential::new(c, key_ids(), c.start))
                .collect(),
            roles,
            audience: spec.audience,
            redirect_uris: spec.redirect_uris.clone(),
        }
    }

    /// The roles this app holds on `resource`, sorted.
    pub fn roles_on(&self, resource: Resource) -> Vec<String> {
        self.roles
            .iter()
            .find(|(r, _)| *r == resource)
            .map(|(_, set)| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A client secret as the directory stores it: metadata plus a hash, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordCredential {
    /// `keyId`.
    pub key_id: String,
    /// `displayName`.
    pub display_name: String,
    /// `hint`: the first three characters of the secret.
    pub hint: String,
    /// `startDateTime`.
    pub start: DateTime<Utc>,
    /// `endDateTime`.
    pub end: DateTime<Utc>,
    /// When the credential was added; it works once the propagation delay has passed.
    pub added_at: DateTime<Utc>,
    secret_sha256: [u8; 32],
}

impl fmt::Debug for PasswordCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordCredential")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .field("hint", &self.hint)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("added_at", &self.added_at)
            .finish_non_exhaustive()
    }
}

impl PasswordCredential {
    pub(crate) fn new(spec: &SecretSpec, key_id: String, added_at: DateTime<Utc>) -> Self {
        PasswordCredential {
            key_id,
            display_name: spec.display_name.clone(),
            hint: spec.value.chars().take(3).collect(),
            start: spec.start,
            end: spec.end,
            added_at,
            secret_sha256: hash(&spec.value),
        }
    }

    /// Whether `secret` is this credential's value.
    pub fn matches(&self, secret: &str) -> bool {
        // Comparing hashes keeps the comparison independent of where the values differ.
        hash(secret) == self.secret_sha256
    }

    /// Whether the credential has propagated and lies within its validity window at `now`.
    pub fn state_at(&self, now: DateTime<Utc>, propagation: Duration) -> CredentialState {
        if now >= self.end {
            CredentialState::Expired
        } else if now < self.start {
            CredentialState::NotYetValid
        } else if now < self.added_at + crate::time::to_chrono(propagation) {
            CredentialState::Propagating
        } else {
            CredentialState::Valid
        }
    }
}

/// Where a credential stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialState {
    /// Usable.
    Valid,
    /// Added less than the propagation delay ago.
    Propagating,
    /// Before its `startDateTime`.
    NotYetValid,
    /// At or after its `endDateTime`.
    Expired,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}
