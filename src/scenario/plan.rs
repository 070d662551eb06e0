//! Lowering: a scenario file checked and turned into the plan a replay follows, with every
//! error naming the file and key.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::file::{ClientFile, LoadError, ScenarioFile, StepFile, issue_certificate};
use super::vocab::{Direction, StepAction, Transport};
use crate::check::{CheckId, Grade};
use crate::fault::{Activation, Fault, FaultKind, FaultWords, Target};
use crate::seed::Seed;
use crate::subject::{Capability, Profile, Settings};
use crate::tenant::{AppSpec, CertificateSpec, SecretSpec, TenantEvent, TenantSpec, UserEvent};
use crate::time::to_chrono;

/// A timeline step the replay performs at its instant.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub at: DateTime<Utc>,
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// A new secret in the tenant, and its value in the client's secret file.
    Rotate(String),
    /// `addPassword` through Graph as an operator's script calls it, asking for this lifetime
    /// (none: Graph's default); its secret into the client's secret file when it succeeds.
    RotateViaGraph(Option<Duration>),
    /// A new certificate in the app's `keyCredentials`, and its certificate and key in the
    /// client's files.
    RotateCertificate(Box<CertificateSpec>),
    /// A value in the client's secret file that the tenant does not know (a wrong paste).
    Paste(String),
    /// The app registration is deleted.
    DeleteApp,
    /// The deleted app is restored, secrets and permissions included.
    RestoreApp,
    /// Every delta token issued so far stops working (410 SyncStateNotFound).
    ExpireDeltaTokens,
    /// The faults on a target end.
    ClearFaults(Target),
    /// Kill the client and start it again: a new process reads its secret afresh, starts with
    /// an empty token cache, and resumes from the same outbox database.
    Restart,
    /// A user-level event in the directory (revoked sessions, a password reset, ...).
    User {
        /// The user's tenant id.
        tenant: String,
        /// The user's principal name.
        upn: String,
        /// What happens to them.
        event: UserEvent,
    },
    /// A user connects again through the subject (the harness drives the sign-in).
    Reconnect {
        /// The user's tenant id.
        tenant: String,
        /// The user's principal name.
        upn: String,
    },
    /// A tenant-level event for the scenario's app (withdrawn consent, a disabled app).
    Tenant {
        /// The customer tenant's id.
        tenant: String,
        /// What happens there.
        event: TenantEvent,
    },
}

impl Action {
    /// What the step does, for `maildrill explain`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Action::Rotate(_) => {
                "rotate the secret (new value in the tenant and the client's secret file)"
                    .to_string()
            }
            Action::RotateViaGraph(lifetime) => format!(
                "rotate the secret through Graph (addPassword, {}; the new secret into the client's secret file; a throttled call retried after its Retry-After)",
                lifetime.map_or_else(
                    || "Graph's default lifetime".to_string(),
                    |l| format!("lifetime {}", days(l))
                )
            ),
            Action::RotateCertificate(c) => format!(
                "rotate the certificate (new certificate {} in the app and in the client's files)",
                c.thumbprints().sha1_hex()
            ),
            Action::Paste(_) => {
                "paste a value the tenant does not know into the client's secret file".to_string()
            }
            Action::DeleteApp => "delete the app registration".to_string(),
            Action::RestoreApp => "restore the deleted app registration".to_string(),
            Action::ExpireDeltaTokens => {
                "expire every delta token (410 SyncStateNotFound)".to_string()
            }
            Action::ClearFaults(target) => format!("clear the faults on {}", target.name()),
            Action::Restart => {
                "restart the client (new process, same outbox, secret read afresh)".to_string()
            }
            Action::User { upn, event, .. } => format!("{} for {upn}", describe_user(*event)),
            Action::Tenant { tenant, event } => format!("{} in {tenant}", describe_tenant(*event)),
            Action::Reconnect { upn, .. } => {
                format!("{upn} connects the mailbox again (signs in and consents)")
            }
        }
    }

    /// Whether the step makes a working credential available (CONTRACTS §4 `rotated_at`). A
    /// rotation through Graph may be refused or throttled: when it made one available is read
    /// from the journal (its `addPassword` answered 200).
    fn restores_credentials(&self) -> bool {
        matches!(
            self,
            Action::Rotate(_) | Action::RotateCertificate(_) | Action::RestoreApp
        )
    }
}

fn describe_user(event: UserEvent) -> &'static str {
    match event {
        UserEvent::RevokeSessions => "revoke the sessions (refresh tokens refused: AADSTS50173)",
        UserEvent::ResetPassword => {
            "reset the password in the Entra admin center (refresh tokens refused: AADSTS50173)"
        }
        UserEvent::IdleRefreshTokens => {
            "let the refresh tokens go 90 days unused (refused: AADSTS700082)"
        }
        UserEvent::RequireMfa => "require MFA (refresh refused until a new sign-in: AADSTS50076)",
        UserEvent::BlockByConditionalAccess => {
            "block token issuance by Conditional Access (AADSTS53003)"
        }
        UserEvent::ExpireMfa => {
            "expire the MFA presented (refresh refused until a new sign-in: AADSTS50078)"
        }
        UserEvent::RequireMfaEnrollment => {
            "require MFA registration (refresh refused until a new sign-in: AADSTS50079)"
        }
        UserEvent::EnforceSignInFrequency => {
            "enforce a one-hour sign-in frequency (older sign-ins refused: AADSTS70043)"
        }
        UserEvent::DisableUser => "disable the account (sign-in and refresh refused: AADSTS50057)",
        UserEvent::EnableUser => "enable the account again",
    }
}

fn describe_tenant(event: TenantEvent) -> &'static str {
    match event {
        TenantEvent::WithdrawConsent => "withdraw consent to the app (AADSTS65001)",
        TenantEvent::DisableApp => "disable the app's service principal (AADSTS7000112)",
        TenantEvent::EnableApp => "enable the app's service principal again",
    }
}

/// A lifetime as a file writes it: whole days as `90d` (humantime would say `2months 29days
/// 2h 52m 48s`), anything else as humantime.
fn days(lifetime: Duration) -> String {
    let secs = lifetime.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) && lifetime.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(lifetime).to_string()
    }
}

/// A window of traffic: one message every `every` in `[from, until)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Traffic {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub every: Duration,
    pub inbound: bool,
}

/// The credential the client under test starts with: the first app's first secret, or its
/// first certificate when it has no secret.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    /// A client secret.
    Secret(SecretSpec),
    /// A certificate (client assertions).
    Certificate(Box<CertificateSpec>),
}

impl Credential {
    /// Its `endDateTime`.
    pub(crate) fn end(&self) -> DateTime<Utc> {
        match self {
            Credential::Secret(s) => s.end,
            Credential::Certificate(c) => c.end,
        }
    }

    /// The secret value, or nothing for a certificate (the secret file then stays empty).
    pub(crate) fn secret_value(&self) -> &str {
        match self {
            Credential::Secret(s) => &s.value,
            Credential::Certificate(_) => "",
        }
    }

    /// The certificate, if it is one.
    pub(crate) fn certificate(&self) -> Option<&CertificateSpec> {
        match self {
            Credential::Secret(_) => None,
            Credential::Certificate(c) => Some(c),
        }
    }
}

/// A scenario lowered and validated: everything a replay needs, nothing run yet.
pub struct Plan {
    pub(crate) seed: Seed,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    pub(crate) tenant: TenantSpec,
    /// Customer tenants of a multi-tenant app (`[[customers]]`).
    pub(crate) customers: Vec<TenantSpec>,
    pub(crate) app: AppSpec,
    pub(crate) credential: Credential,
    pub(crate) mailbox: String,
    /// The bundled client's profile, when the bundled client is the subject.
    pub(crate) profile: Profile,
    pub(crate) faults: Vec<Fault>,
    pub(crate) steps: Vec<Step>,
    pub(crate) rotated_at: Option<DateTime<Utc>>,
    pub(crate) traffic: Vec<Traffic>,
    pub(crate) settings: Settings,
    /// What a subject must be able to do to be judged by this scenario.
    pub(crate) needs: Vec<Capability>,
    /// The users who connect their mailboxes to a multi-tenant app, when the scenario has
    /// customers.
    pub(crate) delegated: Option<Delegated>,
}

/// A multi-tenant app's connections: every user of every customer tenant connects at the
/// start, through the app's first redirect URI; each then sends and receives on every traffic
/// window.
#[derive(Debug, Clone)]
pub(crate) struct Delegated {
    pub redirect_uri: String,
    pub connections: Vec<Connection>,
}

/// A user who connects a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connection {
    pub tenant_id: String,
    pub upn: String,
}

impl Plan {
    /// The same plan `by` later: every instant in it (start, end, secrets, faults, steps,
    /// traffic) moved together, so a drill can play it on today's calendar, the one its
    /// subject's own clock reads.
    pub fn shifted(mut self, by: TimeDelta) -> Plan {
        let shift = |at: &mut DateTime<Utc>| *at += by;
        shift(&mut self.start);
        shift(&mut self.end);
        let apps = self
            .tenant
            .apps
            .iter_mut()
            .chain(std::iter::once(&mut self.app));
        let mut windows: Vec<(&mut DateTime<Utc>, &mut DateTime<Utc>)> = Vec::new();
        for app in apps {
            windows.extend(app.secrets.iter_mut().map(|s| (&mut s.start, &mut s.end)));
            windows.extend(
                app.certificates
                    .iter_mut()
                    .map(|c| (&mut c.start, &mut c.end)),
            );
        }
        match &mut self.credential {
            Credential::Secret(s) => windows.push((&mut s.start, &mut s.end)),
            Credential::Certificate(c) => windows.push((&mut c.start, &mut c.end)),
        }
        for step in &mut self.steps {
            if let Action::RotateCertificate(c) = &mut step.action {
                windows.push((&mut c.start, &mut c.end));
            }
        }
        // The PEM's own notBefore and notAfter stay as issued: the tenant and the client
        // read a certificate's dates from its key credential, which moves.
        for (start, end) in windows {
            shift(start);
            shift(end);
        }
        for fault in &mut self.faults {
            fault.activation.from.as_mut().map(shift);
            fault.activation.until.as_mut().map(shift);
        }
        for step in &mut self.steps {
            shift(&mut step.at);
        }
        self.rotated_at.as_mut().map(shift);
        for window in &mut self.traffic {
            shift(&mut window.from);
            shift(&mut window.until);
        }
        self
    }

    /// The first instant of the plan.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("seed", &self.seed)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

fn semantic(path: &Path, key: String, message: impl Into<String>) -> LoadError {
    LoadError::Semantic {
        path: path.to_path_buf(),
        key,
        message: message.into(),
    }
}

/// A step's `target`, which `fault` and `clear-faults` need.
fn target(path: &Path, i: usize, step: &StepFile) -> Result<Target, LoadError> {
    step.target.ok_or_else(|| {
        semantic(
            path,
            format!("timeline[{i}].target"),
            "expected entra, graph, smtp or alerts, got nothing",
        )
    })
}

/// A user's or a tenant's event, its `user` or `tenant` checked against the tenants.
fn event_step(
    path: &Path,
    i: usize,
    step: &StepFile,
    tenants: &[&TenantSpec],
) -> Result<Action, LoadError> {
    let user_event = match step.action {
        StepAction::RevokeSessions => Some(UserEvent::RevokeSessions),
        StepAction::ResetPassword => Some(UserEvent::ResetPassword),
        StepAction::IdleRefreshTokens => Some(UserEvent::IdleRefreshTokens),
        StepAction::RequireMfa => Some(UserEvent::RequireMfa),
        StepAction::BlockByConditionalAccess => Some(UserEvent::BlockByConditionalAccess),
        StepAction::ExpireMfa => Some(UserEvent::ExpireMfa),
        StepAction::RequireMfaEnrollment => Some(UserEvent::RequireMfaEnrollment),
        StepAction::EnforceSignInFrequency => Some(UserEvent::EnforceSignInFrequency),
        StepAction::DisableUser => Some(UserEvent::DisableUser),
        StepAction::EnableUser => Some(UserEvent::EnableUser),
        StepAction::Reconnect => None,
        _ => return tenant_step(path, i, step, tenants),
    };
    let upn = needed(
        path,
        i,
        step.user.as_ref(),
        "user",
        "this step needs the user's UPN",
    )?;
    let tenant = tenants
        .iter()
        .find(|t| t.mailboxes.iter().any(|m| m.upn.eq_ignore_ascii_case(&upn)))
        .ok_or_else(|| {
            let message = format!("{upn} is no user of the tenant or the customers");
            semantic(path, format!("timeline[{i}].user"), message)
        })?;
    let tenant = tenant.id.clone();
    Ok(match user_event {
        Some(event) => Action::User { tenant, upn, event },
        None => Action::Reconnect { tenant, upn },
    })
}

/// A customer tenant's event, its `tenant` checked against the customers.
fn tenant_step(
    path: &Path,
    i: usize,
    step: &StepFile,
    tenants: &[&TenantSpec],
) -> Result<Action, LoadError> {
    let event = match step.action {
        StepAction::WithdrawConsent => TenantEvent::WithdrawConsent,
        StepAction::DisableAppInTenant => TenantEvent::DisableApp,
        _ => TenantEvent::EnableApp,
    };
    let named = needed(
        path,
        i,
        step.tenant.as_ref(),
        "tenant",
        "this step needs a tenant",
    )?;
    let tenant = tenants
        .iter()
        .skip(1)
        .find(|t| t.id.eq_ignore_ascii_case(&named) || t.domain.eq_ignore_ascii_case(&named))
        .ok_or_else(|| {
            let message = format!("{named} is no customer tenant");
            semantic(path, format!("timeline[{i}].tenant"), message)
        })?;
    Ok(Action::Tenant {
        tenant: tenant.id.clone(),
        event,
    })
}

/// A step's parameter its action or fault kind needs.
fn needed<T: Clone>(
    path: &Path,
    i: usize,
    value: Option<&T>,
    key: &str,
    what: &str,
) -> Result<T, LoadError> {
    value
        .cloned()
        .ok_or_else(|| semantic(path, format!("timeline[{i}].{key}"), what))
}

fn first<'a, T>(items: &'a [T], path: &Path, key: &str, what: &str) -> Result<&'a T, LoadError> {
    items
        .first()
        .ok_or_else(|| semantic(path, key.into(), format!("at least one {what} is needed")))
}

/// Checks `file` and lowers it into a plan; `seed` overrides the file's.
pub fn lower(path: &Path, file: &ScenarioFile, seed: Option<u64>) -> Result<Plan, LoadError> {
    let seed = Seed(seed.unwrap_or(file.seed));
    let start = file.start();
    let end = file
        .end
        .map_or(start + TimeDelta::days(1), |e| e.resolve(start));
    if end <= start {
        return Err(semantic(path, "end".into(), "must be after start"));
    }
    let tenant = file.tenant_spec(path)?;
    let customers = file.customer_specs(path)?;
    let app = first(&tenant.apps, path, "tenant.apps", "app")?.clone();
    let credential = match (app.secrets.first(), app.certificates.first()) {
        (Some(secret), _) => Credential::Secret(secret.clone()),
        (None, Some(certificate)) => Credential::Certificate(Box::new(certificate.clone())),
        (None, None) => {
            return Err(semantic(
                path,
                "tenant.apps[0].secrets".into(),
                "at least one secret or certificate is needed",
            ));
        }
    };
    let mailbox = first(&tenant.mailboxes, path, "tenant.mailboxes", "mailbox")?
        .upn
        .clone();
    let tenants: Vec<&TenantSpec> = std::iter::once(&tenant).chain(&customers).collect();
    let (faults, steps) = timeline(path, file, start, &tenants)?;
    let rotated_at = steps
        .iter()
        .find(|s| s.action.restores_credentials())
        .map(|s| s.at);
    let traffic = traffic(path, file, start)?;
    let settings = settings(file.client.as_ref(), &traffic);
    let delegated = delegated(path, &app, &customers)?;
    if delegated.is_none()
        && let Some(i) = file
            .timeline
            .iter()
            .position(|s| s.action == StepAction::Reconnect)
    {
        return Err(semantic(
            path,
            format!("timeline[{i}].action"),
            "`reconnect` needs users who connected: a multi-tenant app with `[[customers]]`",
        ));
    }
    let mut needs = needs(file, settings, &credential, &steps);
    if delegated.is_some() {
        needs.push(Capability::Delegated);
    }
    Ok(Plan {
        seed,
        start,
        end,
        tenant,
        customers,
        app,
        credential,
        mailbox,
        profile: file.client.as_ref().map(|c| c.profile).unwrap_or_default(),
        faults,
        steps,
        rotated_at,
        traffic,
        settings,
        needs,
        delegated,
    })
}

/// The connections of a multi-tenant app with customers: every customer user, in file order.
fn delegated(
    path: &Path,
    app: &AppSpec,
    customers: &[TenantSpec],
) -> Result<Option<Delegated>, LoadError> {
    if customers.is_empty() || app.audience != crate::tenant::SignInAudience::MultiTenant {
        return Ok(None);
    }
    let Some(redirect_uri) = app.redirect_uris.first() else {
        return Err(semantic(
            path,
            "tenant.apps[0].redirect_uris".into(),
            "a multi-tenant app with customers needs a redirect URI for its users to connect",
        ));
    };
    let connections = customers
        .iter()
        .flat_map(|t| {
            t.mailboxes.iter().map(|m| Connection {
                tenant_id: t.id.clone(),
                upn: m.upn.clone(),
            })
        })
        .collect();
    Ok(Some(Delegated {
        redirect_uri: redirect_uri.clone(),
        connections,
    }))
}

/// The timeline: faults are windows from their instant; everything else is a step the replay
/// performs, in time order.
fn timeline(
    path: &Path,
    file: &ScenarioFile,
    start: DateTime<Utc>,
    tenants: &[&TenantSpec],
) -> Result<(Vec<Fault>, Vec<Step>), LoadError> {
    let mut faults = Vec::new();
    let mut steps = Vec::new();
    let mut keys = file.certificate_count();
    for (i, step) in file.timeline.iter().enumerate() {
        let at = step.at.resolve(start);
        let value = || {
            needed(
                path,
                i,
                step.value.as_ref(),
                "value",
                "rotate-secret and paste-secret need the secret's value",
            )
        };
        let action = match step.action {
            StepAction::RotateSecret => Action::Rotate(value()?),
            StepAction::RotateSecretViaGraph => Action::RotateViaGraph(step.lifetime.map(|l| l.0)),
            StepAction::PasteSecret => Action::Paste(value()?),
            StepAction::RotateCertificate => {
                let key = format!("timeline[{i}]");
                let end = at + TimeDelta::days(365);
                let certificate = issue_certificate(path, &key, keys, "rotated", at, end)?;
                keys += 1;
                Action::RotateCertificate(Box::new(certificate))
            }
            StepAction::DeleteApp => Action::DeleteApp,
            StepAction::RestoreApp => Action::RestoreApp,
            StepAction::ExpireDeltaTokens => Action::ExpireDeltaTokens,
            StepAction::RestartClient => Action::Restart,
            StepAction::ClearFaults => Action::ClearFaults(target(path, i, step)?),
            StepAction::RevokeSessions
            | StepAction::ResetPassword
            | StepAction::IdleRefreshTokens
            | StepAction::RequireMfa
            | StepAction::BlockByConditionalAccess
            | StepAction::ExpireMfa
            | StepAction::RequireMfaEnrollment
            | StepAction::EnforceSignInFrequency
            | StepAction::DisableUser
            | StepAction::EnableUser
            | StepAction::WithdrawConsent
            | StepAction::DisableAppInTenant
            | StepAction::EnableAppInTenant
            | StepAction::Reconnect => event_step(path, i, step, tenants)?,
            StepAction::Fault => {
                scope_known(path, i, step, file)?;
                faults.push(fault(path, i, step, at)?);
                continue;
            }
        };
        steps.push(Step { at, action });
    }
    steps.sort_by_key(|s| s.at);
    Ok((faults, steps))
}

/// The traffic windows.
fn traffic(
    path: &Path,
    file: &ScenarioFile,
    start: DateTime<Utc>,
) -> Result<Vec<Traffic>, LoadError> {
    file.traffic
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.every.0.is_zero() {
                return Err(semantic(
                    path,
                    format!("traffic[{i}].every"),
                    "must be longer than 0s",
                ));
            }
            Ok(Traffic {
                from: t.from.resolve(start),
                until: t.until.resolve(start),
                every: t.every.0,
                inbound: t.direction.unwrap_or_default() == Direction::Inbound,
            })
        })
        .collect()
}

/// The `[client]` table's settings, with their defaults.
fn settings(client: Option<&ClientFile>, traffic: &[Traffic]) -> Settings {
    let setting = |pick: fn(&ClientFile) -> Option<Duration>, default: u64| {
        client
            .and_then(pick)
            .unwrap_or(Duration::from_secs(default))
    };
    Settings {
        graph: client.map(|c| c.transport).unwrap_or_default() == Transport::Graph,
        latency_threshold: setting(|c| c.latency_threshold.map(|d| d.0), 300),
        backoff_cap: setting(|c| c.backoff_cap.map(|d| d.0), 300),
        refresh_ahead: setting(|c| c.refresh_ahead.map(|d| d.0), 300),
        sync_interval: setting(|c| c.sync_interval.map(|d| d.0), 60),
        inbound: traffic.iter().any(|t| t.inbound),
    }
}

/// The capabilities a subject needs for `file`: its transport, and the inbound sync or alerts
/// when a check of theirs is expected to pass (a subject without them fails those checks, which
/// is what a scenario expecting them to fail asks; inbound mail alone just lands in the inbox).
fn needs(
    file: &ScenarioFile,
    settings: Settings,
    credential: &Credential,
    steps: &[Step],
) -> Vec<Capability> {
    let mut needs = vec![if settings.graph {
        Capability::GraphSend
    } else {
        Capability::Smtp
    }];
    let rotates_certificate = steps
        .iter()
        .any(|s| matches!(s.action, Action::RotateCertificate(_)));
    if credential.certificate().is_some() || rotates_certificate {
        needs.push(Capability::Certificate);
    }
    let expects_pass = |ids: &[CheckId]| {
        file.expect
            .iter()
            .any(|e| ids.contains(&e.check) && e.verdict == Grade::Pass)
    };
    if expects_pass(&[CheckId::SyncComplete]) {
        needs.push(Capability::InboundSync);
    }
    if expects_pass(&[
        CheckId::ExpiryAlertLead,
        CheckId::ExpiryAlertOpenUntilRotated,
        CheckId::LatencyAlertWithin,
        CheckId::AlertsResolved,
    ]) {
        needs.push(Capability::Alerts);
    }
    needs
}

/// A `fault` step's `app` and `mailbox` name ones of the file's tenant: a typo would scope
/// the fault to nothing and the scenario would quietly test less.
fn scope_known(
    path: &Path,
    i: usize,
    step: &StepFile,
    file: &ScenarioFile,
) -> Result<(), LoadError> {
    let apps = &file.tenant.apps;
    if let Some(app) = &step.app
        && !apps.iter().any(|a| a.app_id.eq_ignore_ascii_case(app))
    {
        let known: Vec<&str> = apps.iter().map(|a| a.app_id.as_str()).collect();
        let message = format!("`{app}` is not an app of the tenant ({})", known.join(", "));
        return Err(semantic(path, format!("timeline[{i}].app"), message));
    }
    let mailboxes = &file.tenant.mailboxes;
    if let Some(mailbox) = &step.mailbox
        && !mailboxes
            .iter()
            .any(|m| m.upn.eq_ignore_ascii_case(mailbox))
    {
        let known: Vec<&str> = mailboxes.iter().map(|m| m.upn.as_str()).collect();
        let message = format!(
            "`{mailbox}` is not a mailbox of the tenant ({})",
            known.join(", ")
        );
        return Err(semantic(path, format!("timeline[{i}].mailbox"), message));
    }
    Ok(())
}

/// A `fault` step lowered into a fault window, checked against its target.
fn fault(path: &Path, i: usize, step: &StepFile, at: DateTime<Utc>) -> Result<Fault, LoadError> {
    let target = target(path, i, step)?;
    let fault = Fault {
        target,
        operation: step.operation.clone(),
        kind: fault_kind(path, i, step, target)?,
        activation: Activation {
            from: Some(at),
            until: step.duration.map(|d| at + to_chrono(d.0)),
            first: step.first,
            probability: None,
            app: step.app.clone(),
            mailbox: step.mailbox.clone(),
        },
    };
    fault
        .validate()
        .map_err(|e| semantic(path, format!("timeline[{i}]"), e.to_string()))?;
    Ok(fault)
}

/// A `fault` step's kind with the parameters it needs.
fn fault_kind(
    path: &Path,
    i: usize,
    step: &StepFile,
    target: Target,
) -> Result<FaultKind, LoadError> {
    let kind = needed(
        path,
        i,
        step.kind.as_ref(),
        "kind",
        "a fault needs a kind: latency, timeout, reset_peer, limit_data, bandwidth, respond, fail_but_deliver, drop_after_data, tls_failure or malformed_body",
    )?;
    let words = FaultWords {
        reply: step.reply.as_deref(),
        delay: step.delay.map(|d| d.0),
        bytes: step.bytes,
        bytes_per_second: step.bytes_per_second,
        ..FaultWords::of(kind)
    };
    words
        .lower(target)
        .map_err(|e| semantic(path, format!("timeline[{i}].{}", e.field), e.message))
}

impl Plan {
    /// The lowered timeline, one line per instant (`maildrill explain`).
    pub fn explain(&self) -> String {
        let t = crate::time::rfc3339;
        let mut lines = vec![
            format!("{} start; seed {}", t(self.start), self.seed),
            match &self.credential {
                Credential::Secret(s) => format!(
                    "{} secret {} works until here ({})",
                    t(s.end),
                    s.display_name,
                    t(s.start)
                ),
                Credential::Certificate(c) => format!(
                    "{} certificate {} ({}) works until here ({})",
                    t(c.end),
                    c.display_name,
                    c.thumbprints().sha1_hex(),
                    t(c.start)
                ),
            },
        ];
        lines.extend(self.policy_line());
        let per = self.delegated.as_ref().map_or(String::new(), |d| {
            format!(
                " for each of {} users of {} customer tenants (staggered)",
                d.connections.len(),
                self.customers.len()
            )
        });
        if let Some(d) = &self.delegated {
            lines.push(format!(
                "{} every user connects a mailbox through {}",
                t(self.start),
                d.redirect_uri
            ));
        }
        for traffic in &self.traffic {
            lines.push(format!(
                "{} {} traffic: one message every {}{per} until {}",
                t(traffic.from),
                if traffic.inbound {
                    "inbound"
                } else {
                    "outbound"
                },
                humantime::format_duration(traffic.every),
                t(traffic.until)
            ));
        }
        for fault in &self.faults {
            let from = fault.activation.from.unwrap_or(self.start);
            let until = fault.activation.until.map_or_else(|| "cleared".into(), t);
            let op = fault.operation.as_deref().unwrap_or("every operation");
            lines.push(format!(
                "{} fault on {} ({op}): {} until {until}",
                t(from),
                fault.target.name(),
                fault.kind
            ));
        }
        for step in &self.steps {
            let what = step.action.describe();
            lines.push(format!("{} {what}", t(step.at)));
        }
        lines.push(format!(
            "{} end; client {} over {}",
            t(self.end),
            self.profile,
            if self.settings.graph { "Graph" } else { "SMTP" }
        ));
        lines.sort();
        lines.join("\n")
    }

    /// The tenant's app management policy, for `explain`.
    fn policy_line(&self) -> Option<String> {
        let policy = self.tenant.settings.app_policy.as_ref()?;
        let rule = match (policy.secrets_allowed, policy.max_secret_lifetime) {
            (false, _) => "no new secrets".to_string(),
            (true, Some(max)) => format!("new secrets for at most {}", days(max)),
            (true, None) => "no restriction on new secrets".to_string(),
        };
        Some(format!(
            "{} app management policy {}: {rule}",
            crate::time::rfc3339(self.start),
            policy.id
        ))
    }

    /// Every secret value of the run (the tenant's and the timeline's): none may show in what
    /// the run wrote.
    pub(crate) fn secret_values(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .tenant
            .apps
            .iter()
            .flat_map(|a| a.secrets.iter().map(|s| s.value.clone()))
            .collect();
        secrets.extend(self.steps.iter().filter_map(|s| match &s.action {
            Action::Rotate(value) | Action::Paste(value) => Some(value.clone()),
            _ => None,
        }));
        secrets
    }

    /// The instants the subject is restarted.
    pub(crate) fn restarts(&self) -> Vec<DateTime<Utc>> {
        self.steps
            .iter()
            .filter(|s| matches!(s.action, Action::Restart))
            .map(|s| s.at)
            .collect()
    }

    /// The seed the replay uses.
    pub fn seed(&self) -> Seed {
        self.seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultName;
    use crate::scenario::file::HumanDuration;

    fn fault_step(kind: FaultName) -> StepFile {
        let text = "at = \"+1h\"\naction = \"fault\"\ntarget = \"smtp\"\n";
        let mut step: StepFile = toml::from_str(text).expect("a valid step");
        step.kind = Some(kind);
        step.duration = Some(HumanDuration(Duration::from_secs(600)));
        step
    }

    #[test]
    fn a_fault_step_is_scoped_to_a_mailbox_of_the_tenant_only() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/sell-2025-02-14.toml"
        ));
        let mut file = crate::scenario::load(path).expect("the incident loads");
        let upn = file.tenant.mailboxes[0].upn.to_ascii_uppercase();
        let mut scoped = fault_step(FaultName::Timeout);
        scoped.mailbox = Some(upn.clone());
        file.timeline.push(scoped);
        let plan = lower(path, &file, None).expect("a known mailbox lowers");
        let last = plan.faults.last().expect("the step's fault");
        assert_eq!(last.activation.mailbox.as_deref(), Some(upn.as_str()));

        let i = file.timeline.len() - 1;
        file.timeline[i].mailbox = Some("nobody@contoso.example".into());
        let error = lower(path, &file, None).expect_err("an unknown mailbox is refused");
        let text = error.to_string();
        assert!(text.contains(&format!("timeline[{i}].mailbox")), "{text}");
        assert!(text.contains("nobody@contoso.example"), "{text}");
    }

    #[test]
    fn limit_data_and_bandwidth_are_scenario_faults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/sell-2025-02-14.toml"
        ));
        let mut file = crate::scenario::load(path).expect("the incident loads");
        let mut cut = fault_step(FaultName::LimitData);
        cut.bytes = Some(12);
        let mut slow = fault_step(FaultName::Bandwidth);
        slow.bytes_per_second = Some(300);
        file.timeline.extend([cut, slow]);
        let plan = lower(path, &file, None).expect("both faults lower");
        let kinds: Vec<&FaultKind> = plan.faults.iter().map(|f| &f.kind).collect();
        assert!(
            kinds.contains(&&FaultKind::LimitData { bytes: 12 }),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&&FaultKind::Bandwidth {
                bytes_per_second: 300
            }),
            "{kinds:?}"
        );
        let window = plan.faults.last().expect("a fault").activation.clone();
        assert_eq!(
            window.until.zip(window.from).map(|(u, f)| u - f),
            Some(TimeDelta::minutes(10))
        );
    }

    /// A multi-tenant scenario: the incident's file with customers and user or tenant steps.
    fn delegated(steps: &str) -> Result<Plan, LoadError> {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/sell-2025-02-14.toml"
        ));
        let text = std::fs::read_to_string(path).expect("the incident file");
        let text = format!(
            "{text}\n[[customers]]\ncount = 100\nusers_per_tenant = 5\nconsent = \"admin\"\n\n\
             [[customers]]\ndomain = \"fabrikam.onmicrosoft.com\"\n\
             users = [{{ upn = \"alice@fabrikam.onmicrosoft.com\" }}]\n{steps}"
        );
        let file = super::super::file::parse(path, &text)?;
        lower(path, &file, None)
    }

    #[test]
    fn customers_expand_from_the_seed_into_tenants_and_users() {
        let plan = delegated("").expect("customers lower");
        assert_eq!(plan.customers.len(), 101);
        let users: usize = plan.customers.iter().map(|t| t.mailboxes.len()).sum();
        assert_eq!(users, 501);
        assert_eq!(plan.customers[0].domain, "customer1.onmicrosoft.com");
        assert_eq!(
            plan.customers[0].mailboxes[4].upn,
            "user5@customer1.onmicrosoft.com"
        );
        assert!(plan.customers[0].consents[0].admin);
        let ids: std::collections::BTreeSet<&str> =
            plan.customers.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids.len(), 101, "tenant ids are distinct");
        let again = delegated("").expect("customers lower");
        assert_eq!(plan.customers[7].id, again.customers[7].id);
        assert_eq!(
            plan.customers[7].mailboxes[2].id,
            again.customers[7].mailboxes[2].id
        );
    }

    #[test]
    fn user_and_tenant_steps_lower_into_directory_events_naming_their_field() {
        let steps = "[[timeline]]\nat = \"+1h\"\naction = \"reset-password\"\n\
                     user = \"alice@fabrikam.onmicrosoft.com\"\n\n\
                     [[timeline]]\nat = \"+2h\"\naction = \"disable-app-in-tenant\"\n\
                     tenant = \"customer3.onmicrosoft.com\"\n";
        let plan = delegated(steps).expect("the steps lower");
        let events: Vec<&Action> = plan
            .steps
            .iter()
            .map(|s| &s.action)
            .filter(|a| matches!(a, Action::User { .. } | Action::Tenant { .. }))
            .collect();
        assert!(matches!(
            events[0],
            Action::User { upn, event: UserEvent::ResetPassword, .. } if upn == "alice@fabrikam.onmicrosoft.com"
        ));
        assert!(matches!(
            events[1],
            Action::Tenant { tenant, event: TenantEvent::DisableApp } if *tenant == plan.customers[2].id
        ));
        let unknown =
            "[[timeline]]\nat = \"+1h\"\naction = \"revoke-sessions\"\nuser = \"x@y.z\"\n";
        let error = delegated(unknown)
            .map(|_| ())
            .expect_err("an unknown user is refused");
        assert!(
            error.to_string().contains("timeline[") && error.to_string().contains("].user"),
            "{error}"
        );
        let missing = "[[timeline]]\nat = \"+1h\"\naction = \"withdraw-consent\"\n";
        let error = delegated(missing)
            .map(|_| ())
            .expect_err("a tenant step needs its tenant");
        assert!(error.to_string().contains("].tenant"), "{error}");
    }
}
