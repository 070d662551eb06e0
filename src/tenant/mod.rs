//! The simulated Microsoft tenant: the one state the Entra, Graph and SMTP mocks share.
//!
//! A [`Directory`] holds tenants, their app registrations with password and key credentials, the access
//! tokens it issued, and mailboxes. Every question it answers takes the calendar instant from
//! the caller's clock, so an expired secret, an expired token and a rotated secret mean the same
//! thing at every mock. It does no I/O and knows nothing of HTTP or SMTP.

mod app;
pub mod assertion;
pub mod certificate;
mod delegated;
pub mod demo;
mod directory;
mod mailbox;
pub mod signing;
mod token;

pub use app::{
    App, AppSpec, CredentialState, PasswordCredential, Resource, SecretSpec, SignInAudience,
};
pub use certificate::{CertificateSpec, KeyCredential, Thumbprints};
pub use delegated::{
    AuthorizeRefusal, AuthorizeRequest, Authorized, Challenge, ChallengeMethod, ConsentSpec,
    DelegatedTokens, GrantError, GrantKind, GrantRequest, Prompt, Requirement, SIGN_IN_FREQUENCY,
    TenantEvent, UserEvent, is_broad,
};
pub use directory::{
    AppPolicy, AssertionRefusal, CredentialError, Directory, DirectoryConfig, PolicyRefusal,
    SharedDirectory, TenantSettings, TenantSpec,
};
pub use mailbox::{
    DeltaError, DeltaPage, InboxMessage, Mailbox, MailboxSpec, SentMessage, SentVia,
};
pub use token::{AccessToken, TokenClaims, TokenError};
