//! Lowering: a scenario file checked and turned into the plan a replay follows, with every
//! error naming the file and key.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::RunError;
use crate::check;
use crate::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use crate::scenario::file::{LoadError, ScenarioFile};
use crate::seed::Seed;
use crate::subject::Profile;
use crate::subject::{Capability, Settings};
use crate::tenant::{AppSpec, SecretSpec, TenantSpec};
use crate::time::to_chrono;

/// A timeline step the replay performs at its instant.
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub at: DateTime<Utc>,
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone)]
pub(super) enum Action {
    /// A new secret in the tenant, and its value in the client's secret file.
    Rotate(String),
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
}

impl Action {
    /// Whether the step makes a working credential available (CONTRACTS §4 `rotated_at`).
    fn restores_credentials(&self) -> bool {
        matches!(self, Action::Rotate(_) | Action::RestoreApp)
    }
}

/// A window of traffic: one message every `every` in `[from, until)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Traffic {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub every: Duration,
    pub inbound: bool,
}

/// A scenario lowered and validated: everything a replay needs, nothing run yet.
pub struct Plan {
    pub(super) seed: Seed,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) tenant: TenantSpec,
    pub(super) app: AppSpec,
    pub(super) secret: SecretSpec,
    pub(super) mailbox: String,
    /// The bundled client's profile, when the bundled client is the subject.
    pub(super) profile: Profile,
    pub(super) faults: Vec<Fault>,
    pub(super) steps: Vec<Step>,
    pub(super) rotated_at: Option<DateTime<Utc>>,
    pub(super) traffic: Vec<Traffic>,
    pub(super) settings: Settings,
    /// What a subject must be able to do to be judged by this scenario.
    pub(super) needs: Vec<Capability>,
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

fn semantic(path: &Path, key: String, message: impl Into<String>) -> RunError {
    RunError::Load(LoadError::Semantic {
        path: path.to_path_buf(),
        key,
        message: message.into(),
    })
}

fn target(path: &Path, i: usize, name: Option<&str>) -> Result<Target, RunError> {
    match name {
        Some("entra") => Ok(Target::Entra),
        Some("graph") => Ok(Target::Graph),
        Some("smtp") => Ok(Target::Smtp),
        Some("alerts") => Ok(Target::Alerts),
        other => Err(semantic(
            path,
            format!("timeline[{i}].target"),
            format!(
                "expected entra, graph, smtp or alerts, got {}",
                other.map_or("nothing".into(), |o| format!("{o:?}"))
            ),
        )),
    }
}

fn first<'a, T>(items: &'a [T], path: &Path, key: &str, what: &str) -> Result<&'a T, RunError> {
    items
        .first()
        .ok_or_else(|| semantic(path, key.into(), format!("at least one {what} is needed")))
}

/// Checks `file` and lowers it into a plan; `seed` overrides the file's.
pub(super) fn lower(path: &Path, file: &ScenarioFile, seed: Option<u64>) -> Result<Plan, RunError> {
    let seed = Seed(seed.unwrap_or(file.seed));
    let start = file.start();
    let end = file
        .end
        .map_or(start + TimeDelta::days(1), |e| e.resolve(start));
    if end <= start {
        return Err(semantic(path, "end".into(), "must be after start"));
    }
    let tenant = file.tenant_spec(path)?;
    let app = first(&tenant.apps, path, "tenant.apps", "app")?.clone();
    let secret = first(&app.secrets, path, "tenant.apps[0].secrets", "secret")?.clone();
    let mailbox = first(&tenant.mailboxes, path, "tenant.mailboxes", "mailbox")?
        .upn
        .clone();
    let client = file.client.clone();
    let profile_name = client.as_ref().map_or("remediated", |c| c.profile.as_str());
    let profile = Profile::parse(profile_name).ok_or_else(|| {
        semantic(
            path,
            "client.profile".into(),
            format!(
                "expected one of {}, got {profile_name:?}",
                Profile::names().join(", ")
            ),
        )
    })?;
    let graph = match client.as_ref().map_or("smtp", |c| c.transport.as_str()) {
        "smtp" => false,
        "graph" => true,
        other => {
            return Err(semantic(
                path,
                "client.transport".into(),
                format!("expected smtp or graph, got {other:?}"),
            ));
        }
    };
    for (i, expect) in file.expect.iter().enumerate() {
        if !check::CHECKS.contains(&expect.check.as_str()) {
            return Err(semantic(
                path,
                format!("expect[{i}].check"),
                format!(
                    "expected one of {}, got {:?}",
                    check::CHECKS.join(", "),
                    expect.check
                ),
            ));
        }
        if !matches!(expect.verdict.as_str(), "pass" | "fail") {
            return Err(semantic(
                path,
                format!("expect[{i}].verdict"),
                "expected pass or fail",
            ));
        }
    }
    // Faults are windows from their instant; everything else is a step the timeline performs.
    let mut faults = Vec::new();
    let mut steps = Vec::new();
    for (i, step) in file.timeline.iter().enumerate() {
        let at = step.at.resolve(start);
        let value = |action: &str| {
            step.value.clone().ok_or_else(|| {
                semantic(
                    path,
                    format!("timeline[{i}].value"),
                    format!("{action} needs the secret's value"),
                )
            })
        };
        let action = match step.action.as_str() {
            "rotate-secret" => Action::Rotate(value("rotate-secret")?),
            "paste-secret" => Action::Paste(value("paste-secret")?),
            "delete-app" => Action::DeleteApp,
            "restore-app" => Action::RestoreApp,
            "expire-delta-tokens" => Action::ExpireDeltaTokens,
            "restart-client" => Action::Restart,
            "clear-faults" => Action::ClearFaults(target(path, i, step.target.as_deref())?),
            "fault" => {
                faults.push(fault(path, i, step, at)?);
                continue;
            }
            other => {
                return Err(semantic(
                    path,
                    format!("timeline[{i}].action"),
                    format!(
                        "expected rotate-secret, paste-secret, delete-app, restore-app, expire-delta-tokens, restart-client, fault or clear-faults, got {other:?}"
                    ),
                ));
            }
        };
        steps.push(Step { at, action });
    }
    steps.sort_by_key(|s| s.at);
    let rotated_at = steps
        .iter()
        .find(|s| s.action.restores_credentials())
        .map(|s| s.at);
    let mut traffic = Vec::new();
    for (i, t) in file.traffic.iter().enumerate() {
        let inbound = match t.direction.as_deref() {
            None | Some("outbound") => false,
            Some("inbound") => true,
            Some(other) => {
                return Err(semantic(
                    path,
                    format!("traffic[{i}].direction"),
                    format!("expected outbound or inbound, got {other:?}"),
                ));
            }
        };
        if t.every.0.is_zero() {
            return Err(semantic(
                path,
                format!("traffic[{i}].every"),
                "must be longer than 0s",
            ));
        }
        traffic.push(Traffic {
            from: t.from.resolve(start),
            until: t.until.resolve(start),
            every: t.every.0,
            inbound,
        });
    }
    let setting = |pick: fn(&crate::scenario::file::ClientFile) -> Option<Duration>,
                   default: u64| {
        client
            .as_ref()
            .and_then(pick)
            .unwrap_or(Duration::from_secs(default))
    };
    let settings = Settings {
        graph,
        latency_threshold: setting(|c| c.latency_threshold.map(|d| d.0), 300),
        backoff_cap: setting(|c| c.backoff_cap.map(|d| d.0), 300),
        refresh_ahead: setting(|c| c.refresh_ahead.map(|d| d.0), 300),
        sync_interval: setting(|c| c.sync_interval.map(|d| d.0), 60),
        inbound: traffic.iter().any(|t| t.inbound),
    };
    Ok(Plan {
        seed,
        start,
        end,
        tenant,
        app,
        secret,
        mailbox,
        profile,
        faults,
        steps,
        rotated_at,
        traffic,
        settings,
        needs: needs(file, settings),
    })
}

/// The capabilities a subject needs for `file`: its transport, and the inbound sync or alerts
/// when a check of theirs is expected to pass (a subject without them fails those checks, which
/// is what a scenario expecting them to fail asks; inbound mail alone just lands in the inbox).
fn needs(file: &ScenarioFile, settings: Settings) -> Vec<Capability> {
    let mut needs = vec![if settings.graph {
        Capability::GraphSend
    } else {
        Capability::Smtp
    }];
    let expects_pass = |ids: &[&str]| {
        file.expect
            .iter()
            .any(|e| ids.contains(&e.check.as_str()) && e.verdict == "pass")
    };
    if expects_pass(&["sync-complete"]) {
        needs.push(Capability::InboundSync);
    }
    if expects_pass(&[
        "expiry-alert-lead",
        "latency-alert-within",
        "alerts-resolved",
    ]) {
        needs.push(Capability::Alerts);
    }
    needs
}

fn fault(
    path: &Path,
    i: usize,
    step: &crate::scenario::file::StepFile,
    at: DateTime<Utc>,
) -> Result<Fault, RunError> {
    let target = target(path, i, step.target.as_deref())?;
    let kind = match step.kind.as_deref() {
        Some("latency") => FaultKind::Latency {
            delay: step.delay.map_or(Duration::from_secs(30), |d| d.0),
        },
        Some("timeout") => FaultKind::Timeout,
        Some("reset_peer") => FaultKind::ResetPeer,
        Some("drop_after_data") => FaultKind::DropAfterData,
        Some("tls_failure") => FaultKind::TlsFailure,
        Some("malformed_body") => FaultKind::MalformedBody,
        Some(kind @ ("respond" | "fail_but_deliver")) => {
            let key = step.reply.as_deref().ok_or_else(|| {
                semantic(
                    path,
                    format!("timeline[{i}].reply"),
                    "a catalogue reply key is needed",
                )
            })?;
            let reply = CatalogueReply::parse(target, key)
                .map_err(|e| semantic(path, format!("timeline[{i}].reply"), e.to_string()))?;
            if kind == "respond" {
                FaultKind::Respond {
                    reply,
                    retry_after: None,
                }
            } else {
                FaultKind::FailButDeliver {
                    reply,
                    retry_after: None,
                }
            }
        }
        other => {
            return Err(semantic(
                path,
                format!("timeline[{i}].kind"),
                format!(
                    "expected latency, timeout, reset_peer, drop_after_data, tls_failure, malformed_body, respond or fail_but_deliver, got {}",
                    other.map_or("nothing".into(), |o| format!("{o:?}"))
                ),
            ));
        }
    };
    let fault = Fault {
        target,
        operation: step.operation.clone(),
        kind,
        activation: Activation {
            from: Some(at),
            until: step.duration.map(|d| at + to_chrono(d.0)),
            first: step.first,
            probability: None,
        },
    };
    fault
        .validate()
        .map_err(|e| semantic(path, format!("timeline[{i}]"), e.to_string()))?;
    Ok(fault)
}

impl Plan {
    /// The lowered timeline, one line per instant (`maildrill explain`).
    pub fn explain(&self) -> String {
        let t = crate::time::rfc3339;
        let mut lines = vec![
            format!("{} start; seed {}", t(self.start), self.seed),
            format!(
                "{} secret {} works until here ({})",
                t(self.secret.end),
                self.secret.display_name,
                t(self.secret.start)
            ),
        ];
        for traffic in &self.traffic {
            lines.push(format!(
                "{} {} traffic: one message every {} until {}",
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
            let what = match &step.action {
                Action::Rotate(_) => {
                    "rotate the secret (new value in the tenant and the client's secret file)"
                        .to_string()
                }
                Action::Paste(_) => {
                    "paste a value the tenant does not know into the client's secret file"
                        .to_string()
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
            };
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

    /// Every secret value of the run (the tenant's and the timeline's): none may show in what
    /// the run wrote.
    pub(super) fn secret_values(&self) -> Vec<String> {
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
    pub(super) fn restarts(&self) -> Vec<DateTime<Utc>> {
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
