//! One generated chaos case: a 24-hour timeline as plain data, the proptest strategy that draws
//! it (and shrinks it), and its lowering into an ordinary scenario file.
//!
//! Everything here is bounded so every case is a valid scenario by construction: faults and
//! restarts fall in the first 22 hours and the last two hours are quiet, so "recovered after the
//! last fault" is "nothing lost at the end".

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use crate::check::{CheckId, Grade};
use crate::fault::Target;
use crate::scenario::file::{
    AppFile, ClientFile, ExpectFile, HumanDuration, Instant, MailboxFile, ScenarioFile, SecretFile,
    StepFile, TenantFile, TrafficFile, When,
};
use crate::scenario::vocab::{Direction, FaultName, StepAction, Transport};
use crate::subject::Profile;
use crate::tenant::demo;

/// Minutes in a case's timeline.
const DAY: u32 = 24 * 60;
/// Faults, restarts and rotations happen before this minute; then the timeline is quiet.
const QUIET_FROM: u32 = 22 * 60;
const OLD_SECRET: &str = "Xk78Q~chaos-secret-old-0000000000000000";
const NEW_SECRET: &str = "Yq59Q~chaos-secret-new-0000000000000000";
/// What a hurried operator pastes: the new secret's ID instead of its value.
const SECRET_ID: &str = "d3b07384-d9a7-4e1c-9f2b-5c8e1a6f4b20";

/// How a new secret reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written to the secret file the client watches.
    File,
    /// Written to the file, then the client is restarted ten minutes later (a redeploy).
    Restart,
}

/// A rotation, relative to the secret's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Minutes after the expiry (negative: before it, with overlapping secrets).
    pub offset: i32,
    /// File or restart.
    pub delivery: Delivery,
    /// Whether the secret's ID is pasted first, an hour before the right value.
    pub wrong_paste_first: bool,
}

/// A fault window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultCase {
    /// The service.
    pub target: Target,
    /// The fault kind.
    pub kind: FaultName,
    /// The operation, if only one.
    pub operation: Option<&'static str>,
    /// The catalogue reply of `respond` and `fail_but_deliver`.
    pub reply: Option<&'static str>,
    /// The seconds of `latency`, the bytes of `limit_data`, the bytes per second of `bandwidth`.
    pub amount: Option<u32>,
    /// Minute it starts.
    pub at: u32,
    /// Minutes it lasts.
    pub minutes: u32,
}

/// A chaos case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Graph `sendMail` instead of SMTP.
    pub graph: bool,
    /// Minute the secret expires, if within the day.
    pub expiry: Option<u32>,
    /// The rotation (with an expiry there always is one: an outage nobody fixes cannot
    /// deliver, whatever the client does).
    pub rotation: Option<Rotation>,
    /// Fault windows.
    pub faults: Vec<FaultCase>,
    /// Minutes of client restarts (each 30 s past its minute, off every message's instant, so
    /// what a restart costs never hangs on a tie with an enqueue).
    pub restarts: Vec<u32>,
    /// Minutes between outbound messages.
    pub every: u32,
    /// Minutes between inbound messages (then the client syncs), if any.
    pub inbound_every: Option<u32>,
    /// Seconds a new secret takes to work after it is added (Entra's propagation).
    pub propagation: u32,
    /// The run's seed (jitter, ids).
    pub seed: u64,
    /// Customers who connect their mailboxes to the app (a delegated case), if any.
    pub customers: Option<Customers>,
}

/// The customers of a delegated case: a multi-tenant app, users of customer tenants who
/// connect their mailboxes, and events only a user or a tenant's admin can mend, each mended
/// later (the user connects again, the admin enables the app again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customers {
    /// Customer tenants.
    pub tenants: u32,
    /// Users in each.
    pub users: u32,
    /// User- and tenant-level events.
    pub events: Vec<UserEventCase>,
}

/// A user- or tenant-level event of a delegated case, and when it is mended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEventCase {
    /// `revoke-sessions`, `reset-password`, `require-mfa`, `idle-refresh-tokens` (a user's),
    /// `withdraw-consent` or `disable-app-in-tenant` (a tenant's).
    pub action: StepAction,
    /// Minute it happens.
    pub at: u32,
    /// The customer tenant, from 1.
    pub tenant: u32,
    /// The user in it, from 1 (a user's event).
    pub user: u32,
    /// Minutes until the user connects again or the admin enables the app.
    pub mended_after: u32,
}

/// The events a delegated case draws from.
const USER_EVENTS: [StepAction; 6] = [
    StepAction::RevokeSessions,
    StepAction::ResetPassword,
    StepAction::RequireMfa,
    StepAction::IdleRefreshTokens,
    StepAction::WithdrawConsent,
    StepAction::DisableAppInTenant,
];

/// The redirect URI of a delegated case's app.
const REDIRECT_URI: &str = "https://mailman.example/oauth/callback";

/// The fault vocabulary per target: (kind, operation, reply, amount).
type Menu = [(
    FaultName,
    Option<&'static str>,
    Option<&'static str>,
    Option<u32>,
)];

use FaultName::{
    Bandwidth, DropAfterData, FailButDeliver, Latency, LimitData, ResetPeer, Respond, Timeout,
    TlsFailure,
};

// Cut replies (`limit_data`) fall where a client learns nothing it could mistake for a send
// that went through: a token reply, an EHLO reply, a delta page.
const ENTRA: &Menu = &[
    (Respond, Some("token"), Some("throttled"), None),
    (Respond, Some("token"), Some("unavailable"), None),
    (Timeout, Some("token"), None, None),
    (ResetPeer, Some("token"), None, None),
    (Latency, Some("token"), None, Some(20)),
    (LimitData, Some("token"), None, Some(120)),
    (Bandwidth, Some("token"), None, Some(64)),
];
const SMTP: &Menu = &[
    (Respond, Some("connect"), Some("service_unavailable"), None),
    (Respond, Some("mail"), Some("sender_thread_limit"), None),
    (DropAfterData, Some("end-of-data"), None, None),
    (ResetPeer, Some("rcpt"), None, None),
    (TlsFailure, None, None, None),
    (Latency, None, None, Some(30)),
    (LimitData, Some("ehlo"), None, Some(40)),
    (Bandwidth, None, None, Some(16)),
];
const GRAPH: &Menu = &[
    (
        Respond,
        Some("send-mail"),
        Some("mailbox_concurrency"),
        None,
    ),
    (Respond, Some("send-mail"), Some("unavailable"), None),
    (Respond, Some("send-mail"), Some("gateway_timeout"), None),
    (
        FailButDeliver,
        Some("send-mail"),
        Some("gateway_timeout"),
        None,
    ),
    (ResetPeer, Some("send-mail"), None, None),
    (Respond, Some("delta"), Some("sync_state_not_found"), None),
    (LimitData, Some("delta"), None, Some(200)),
    (Bandwidth, Some("send-mail"), None, Some(64)),
];
const ALERTS: &Menu = &[(ResetPeer, None, None, None), (Timeout, None, None, None)];

fn fault(graph: bool) -> impl Strategy<Value = FaultCase> {
    let transport_menu = if graph { GRAPH } else { SMTP };
    let target = prop_oneof![
        3 => Just((Target::Entra, ENTRA)),
        3 => Just((if graph { Target::Graph } else { Target::Smtp }, transport_menu)),
        1 => Just((Target::Alerts, ALERTS)),
    ];
    (
        target,
        any::<prop::sample::Index>(),
        60..QUIET_FROM - 180,
        1u32..=180,
    )
        .prop_map(|((target, menu), pick, at, minutes)| {
            let (kind, operation, reply, amount) = menu[pick.index(menu.len())];
            FaultCase {
                target,
                kind,
                operation,
                reply,
                amount,
                at,
                minutes,
            }
        })
}

fn rotation() -> impl Strategy<Value = Rotation> {
    (
        -120i32..=360,
        prop_oneof![Just(Delivery::File), Just(Delivery::Restart)],
        prop::bool::weighted(0.25),
    )
        .prop_map(|(offset, delivery, wrong_paste_first)| Rotation {
            offset,
            delivery,
            wrong_paste_first,
        })
}

fn customers() -> impl Strategy<Value = Customers> {
    (1u32..=4, 1u32..=3).prop_flat_map(|(tenants, users)| {
        let event = (
            prop::sample::select(USER_EVENTS.to_vec()),
            60..QUIET_FROM - 240,
            1..=tenants,
            1..=users,
            30u32..=180,
        )
            .prop_map(|(action, at, tenant, user, mended_after)| UserEventCase {
                action,
                at,
                tenant,
                user,
                mended_after,
            });
        prop::collection::vec(event, 0..=3).prop_map(move |events| Customers {
            tenants,
            users,
            events,
        })
    })
}

/// Every case, with delegated ones (customers connecting) among them when `delegated`: the
/// app-only part is drawn first, so the same index gives the same app-only timeline either
/// way. Shrinking drops faults, restarts, the rotation's detours, the inbound mail and the
/// customers' events, and moves instants earlier.
pub fn strategy(delegated: bool) -> BoxedStrategy<Case> {
    if !delegated {
        return app_only().boxed();
    }
    (app_only(), prop::option::weighted(0.3, customers()))
        .prop_map(|(case, customers)| Case { customers, ..case })
        .boxed()
}

/// An app-only case (one mailbox, client credentials).
fn app_only() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        prop::option::weighted(0.7, 180u32..=QUIET_FROM - 360),
        rotation(),
        prop::sample::select(vec![1u32, 2, 5, 10]),
        prop::option::weighted(0.4, prop::sample::select(vec![3u32, 10, 30])),
        prop::sample::select(vec![10u32, 60, 300, 900]),
        any::<u64>(),
    )
        .prop_flat_map(
            |(graph, expiry, rotation, every, inbound_every, propagation, seed)| {
                (
                    prop::collection::vec(fault(graph), 0..=4),
                    prop::collection::vec(restart(expiry, rotation), 0..=2),
                )
                    .prop_map(move |(faults, restarts)| Case {
                        graph,
                        expiry,
                        rotation: expiry.map(|_| rotation),
                        faults,
                        restarts,
                        every,
                        inbound_every,
                        propagation,
                        seed,
                        customers: None,
                    })
            },
        )
}

/// A restart's minute: anywhere in the busy part of the day, or, as often, inside the
/// credential outage (between the expiry and a late rotation), where a backlog waits and a
/// restart has the most to lose.
fn restart(expiry: Option<u32>, rotation: Rotation) -> BoxedStrategy<u32> {
    let anywhere = 60u32..QUIET_FROM;
    let outage = expiry
        .filter(|_| rotation.offset > 1)
        .map(|expiry| {
            let end = (expiry + rotation.offset.unsigned_abs()).min(QUIET_FROM - 30);
            (expiry + 1).min(end)..end
        })
        .filter(|range| !range.is_empty());
    match outage {
        Some(outage) => prop_oneof![anywhere, outage].boxed(),
        None => anywhere.boxed(),
    }
}

fn minutes(m: u32) -> When {
    When::After(Duration::from_secs(u64::from(m) * 60))
}

/// A restart, 30 s past minute `at`: messages arrive on whole minutes.
fn restart_step(at: u32) -> StepFile {
    StepFile {
        at: When::After(Duration::from_secs(u64::from(at) * 60 + 30)),
        ..step(at, StepAction::RestartClient)
    }
}

fn step(at: u32, action: StepAction) -> StepFile {
    StepFile {
        at: minutes(at),
        action,
        value: None,
        lifetime: None,
        target: None,
        kind: None,
        operation: None,
        reply: None,
        delay: None,
        bytes: None,
        bytes_per_second: None,
        duration: None,
        first: None,
        app: None,
        mailbox: None,
        user: None,
        tenant: None,
    }
}

fn expect(check: CheckId) -> ExpectFile {
    ExpectFile {
        check,
        verdict: Grade::Pass,
        within: None,
        lead: None,
        per_hour: None,
        per_user: None,
        allow_unknowable: None,
    }
}

impl UserEventCase {
    /// The event and its mending, as timeline steps (a tenant's: every user of the tenant
    /// connects again after withdrawn consent; the admin enables a disabled app).
    /// The mending falls after any token-endpoint fault window it would land in: a user who
    /// signs in while Entra is down cannot connect, which says nothing of the client.
    fn steps(&self, users: u32, entra: &[(u32, u32)]) -> Vec<StepFile> {
        let tenant = format!("customer{}.onmicrosoft.com", self.tenant);
        let user = |k: u32| format!("user{k}@{tenant}");
        let mut mended = (self.at + self.mended_after).min(QUIET_FROM - 30);
        while let Some((_, end)) = entra
            .iter()
            .find(|(from, end)| *from <= mended && mended <= *end)
        {
            mended = end + 1;
        }
        let mut event = step(self.at, self.action);
        let reconnect = |k: u32| StepFile {
            user: Some(user(k)),
            ..step(mended, StepAction::Reconnect)
        };
        match self.action {
            StepAction::WithdrawConsent => {
                event.tenant = Some(tenant.clone());
                std::iter::once(event)
                    .chain((1..=users).map(reconnect))
                    .collect()
            }
            StepAction::DisableAppInTenant => {
                event.tenant = Some(tenant.clone());
                let enable = StepFile {
                    tenant: Some(tenant),
                    ..step(mended, StepAction::EnableAppInTenant)
                };
                vec![event, enable]
            }
            _ => {
                event.user = Some(user(self.user));
                vec![event, reconnect(self.user)]
            }
        }
    }
}

impl Case {
    /// The minute the new secret goes in, if any, clamped into the busy part of the day.
    fn rotation_minute(&self) -> Option<u32> {
        let (expiry, rotation) = (self.expiry?, self.rotation?);
        let at = i64::from(expiry) + i64::from(rotation.offset);
        Some(u32::try_from(at.clamp(60, i64::from(QUIET_FROM) - 30)).unwrap_or(60))
    }

    /// The case as a scenario file whose expectations are the chaos invariants, all `pass`.
    pub fn scenario(&self, name: &str, start: DateTime<Utc>, profile: Profile) -> ScenarioFile {
        let secret_end = self.expiry.map_or(start + TimeDelta::days(365), |m| {
            start + TimeDelta::minutes(i64::from(m))
        });
        let timeline = self.timeline();
        let mut traffic = vec![TrafficFile {
            direction: None,
            from: minutes(0),
            until: minutes(QUIET_FROM),
            every: HumanDuration(Duration::from_secs(u64::from(self.every) * 60)),
        }];
        if let Some(every) = self.inbound_every {
            traffic.push(TrafficFile {
                direction: Some(Direction::Inbound),
                from: minutes(0),
                until: minutes(QUIET_FROM),
                every: HumanDuration(Duration::from_secs(u64::from(every) * 60)),
            });
        }
        ScenarioFile {
            name: name.into(),
            description: "generated by maildrill chaos".into(),
            seed: self.seed,
            start: Instant(start),
            end: Some(minutes(DAY)),
            tenant: self.tenant(start, secret_end),
            customers: self.customer_files(),
            client: Some(ClientFile {
                transport: if self.graph {
                    Transport::Graph
                } else {
                    Transport::Smtp
                },
                profile,
                latency_threshold: None,
                backoff_cap: None,
                refresh_ahead: None,
                sync_interval: None,
            }),
            traffic,
            timeline,
            expect: self.invariants(start, secret_end),
        }
    }

    /// The timeline: the rotation (with a wrong paste first, or a redeploy after), the fault
    /// windows, the restarts.
    fn timeline(&self) -> Vec<StepFile> {
        let mut timeline = Vec::new();
        if let (Some(at), Some(rotation)) = (self.rotation_minute(), self.rotation) {
            if rotation.wrong_paste_first {
                let mut paste = step(at.saturating_sub(60).max(30), StepAction::PasteSecret);
                paste.value = Some(SECRET_ID.into());
                timeline.push(paste);
            }
            let mut rotate = step(at, StepAction::RotateSecret);
            rotate.value = Some(NEW_SECRET.into());
            timeline.push(rotate);
            if rotation.delivery == Delivery::Restart {
                timeline.push(restart_step(at + 10));
            }
        }
        for fault in &self.faults {
            let mut s = step(fault.at, StepAction::Fault);
            s.target = Some(fault.target);
            s.kind = Some(fault.kind);
            s.operation = fault.operation.map(Into::into);
            s.reply = fault.reply.map(Into::into);
            let amount = fault.amount.map(u64::from);
            match fault.kind {
                Latency => s.delay = amount.map(|d| HumanDuration(Duration::from_secs(d))),
                LimitData => s.bytes = amount,
                Bandwidth => s.bytes_per_second = amount,
                _ => {}
            }
            s.duration = Some(HumanDuration(Duration::from_secs(
                u64::from(fault.minutes) * 60,
            )));
            timeline.push(s);
        }
        for restart in &self.restarts {
            timeline.push(restart_step(*restart));
        }
        let entra: Vec<(u32, u32)> = self
            .faults
            .iter()
            .filter(|f| f.target == Target::Entra)
            .map(|f| (f.at, f.at + f.minutes))
            .collect();
        for event in self.customers.iter().flat_map(|c| &c.events) {
            let users = self.customers.as_ref().map_or(1, |c| c.users);
            timeline.extend(event.steps(users, &entra));
        }
        timeline
    }

    /// The customer tenants of a delegated case (admins consented: every user connects
    /// without a consent page).
    fn customer_files(&self) -> Vec<crate::scenario::file::CustomerFile> {
        let Some(customers) = &self.customers else {
            return Vec::new();
        };
        vec![crate::scenario::file::CustomerFile {
            id: None,
            domain: None,
            count: Some(customers.tenants),
            users_per_tenant: Some(customers.users),
            users: Vec::new(),
            consent: Some(crate::scenario::file::ConsentFile::Admin),
            user_consent: None,
        }]
    }

    /// The demo tenant whose one secret ends at `secret_end`.
    fn tenant(&self, start: DateTime<Utc>, secret_end: DateTime<Utc>) -> TenantFile {
        TenantFile {
            id: demo::TENANT_ID.into(),
            domain: demo::TENANT_DOMAIN.into(),
            propagation_delay: Some(HumanDuration(Duration::from_secs(u64::from(
                self.propagation,
            )))),
            token_lifetime: None,
            delta_token_max_age: None,
            smtp_auth: None,
            user_consent: None,
            app_policy: None,
            apps: vec![AppFile {
                app_id: demo::APP_ID.into(),
                object_id: None,
                display_name: Some("Mailman".into()),
                roles: BTreeMap::new(),
                secrets: vec![SecretFile {
                    value: OLD_SECRET.into(),
                    display_name: Some("mailman-prod".into()),
                    start: Some(When::At(start - TimeDelta::days(180))),
                    end: When::At(secret_end),
                }],
                certificates: vec![],
                audience: self
                    .customers
                    .as_ref()
                    .map(|_| crate::tenant::SignInAudience::MultiTenant),
                redirect_uris: self
                    .customers
                    .iter()
                    .map(|_| REDIRECT_URI.to_string())
                    .collect(),
            }],
            mailboxes: vec![MailboxFile {
                upn: demo::MAILBOX.into(),
                id: None,
                display_name: None,
            }],
        }
    }

    /// The checks every case must pass.
    fn invariants(&self, start: DateTime<Utc>, secret_end: DateTime<Utc>) -> Vec<ExpectFile> {
        let mut checks = vec![expect(CheckId::NoLoss)];
        let mut duplicates = expect(CheckId::NoDuplicates);
        duplicates.allow_unknowable = Some(true);
        checks.push(duplicates);
        let mut budget = expect(CheckId::TokenRequestBudget);
        budget.per_hour = Some(30);
        checks.push(budget);
        let mut latency = expect(CheckId::LatencyAlertWithin);
        latency.within = Some(HumanDuration(Duration::from_secs(600)));
        checks.push(latency);
        if self.customers.is_some() {
            // Many users' attempts interleave on the wire: their gaps are no one's backoff.
            checks.push(expect(CheckId::NoFalseDisconnect));
            if let Some(budget) = checks
                .iter_mut()
                .find(|c| c.check == CheckId::TokenRequestBudget)
            {
                // With one or two users the app's own probes are one user's too.
                budget.per_user = Some(30);
            }
        } else {
            checks.push(expect(CheckId::BackoffShape));
        }
        if self.expiry.is_some() {
            // An alert before the expiry, as early as the calendar allows (at most a day).
            let ahead = (secret_end - start - TimeDelta::minutes(1))
                .min(TimeDelta::days(1))
                .to_std()
                .unwrap_or_default();
            let mut lead = expect(CheckId::ExpiryAlertLead);
            lead.lead = Some(HumanDuration(ahead));
            checks.push(lead);
        }
        if self.inbound_every.is_some() {
            checks.push(expect(CheckId::SyncComplete));
        }
        checks.push(expect(CheckId::NoSecretLeak));
        checks
    }
}
