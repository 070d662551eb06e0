//! The words a scenario file is written in: transports, traffic directions, timeline actions
//! and fault kinds, each an enum parsed once by serde, so a wrong word is an error naming the
//! file, line and key and listing every valid value.

use serde::{Deserialize, Serialize};

pub use crate::fault::FaultName;

/// How the client sends mail.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Office 365 SMTP submission with XOAUTH2.
    #[default]
    Smtp,
    /// Microsoft Graph `sendMail`.
    Graph,
}

/// Which way a traffic window's mail goes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent by the client.
    #[default]
    Outbound,
    /// Arriving in the mailbox, for the client's inbound sync.
    Inbound,
}

/// What a timeline step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepAction {
    /// A new secret in the tenant, and its value in the client's secret file (`value`).
    RotateSecret,
    /// `addPassword` through Graph with the app's own token, as an operator's rotation script
    /// does (`lifetime`): on success the new secret goes into the client's secret file; a
    /// throttled call is retried after its `Retry-After`, a refusal is left for a later step.
    RotateSecretViaGraph,
    /// A value in the client's secret file only (`value`): a wrong paste.
    PasteSecret,
    /// A new certificate in the app's `keyCredentials` (the next bundled test key, valid for a
    /// year), and its certificate and key in the client's files.
    RotateCertificate,
    /// The app registration is deleted.
    DeleteApp,
    /// The deleted app is restored.
    RestoreApp,
    /// Every delta token issued so far stops working.
    ExpireDeltaTokens,
    /// The client is stopped and started again on the same state.
    RestartClient,
    /// A fault window opens (`target`, `kind`, ...).
    Fault,
    /// The faults on `target` end.
    ClearFaults,
    /// A user's sessions are revoked (`user`): their refresh tokens end (AADSTS50173).
    RevokeSessions,
    /// An admin resets a user's password in the Entra admin center (`user`), which revokes
    /// their refresh tokens (AADSTS50173).
    ResetPassword,
    /// A user's refresh tokens go unused past 90 days (`user`; AADSTS700082).
    IdleRefreshTokens,
    /// MFA is required of a user from now on (`user`; AADSTS50076 until they sign in again).
    RequireMfa,
    /// A Conditional Access policy blocks a user's token issuance (`user`; AADSTS53003).
    BlockByConditionalAccess,
    /// The MFA a user presented expires (`user`; AADSTS50078 until they sign in again).
    ExpireMfa,
    /// A user must register for MFA (`user`; AADSTS50079 until they sign in again).
    RequireMfaEnrollment,
    /// A Conditional Access sign-in frequency of one hour applies to a user (`user`; a refresh
    /// token of an older sign-in is refused with AADSTS70043).
    EnforceSignInFrequency,
    /// A user's account is disabled (`user`; AADSTS50057 on sign-in and refresh).
    DisableUser,
    /// A disabled user's account is enabled again (`user`).
    EnableUser,
    /// Consent to the app is withdrawn in a customer tenant (`tenant`; AADSTS65001).
    WithdrawConsent,
    /// The app's service principal is disabled in a customer tenant (`tenant`; AADSTS7000112).
    DisableAppInTenant,
    /// The app's service principal is enabled again in a customer tenant (`tenant`).
    EnableAppInTenant,
    /// A user connects the mailbox again through the subject (`user`): signs in, consents,
    /// and the subject redeems the new code, as a customer who clicks "reconnect" does.
    Reconnect,
}
