//! The timeline: one SVG, drawn here on the server, in lanes (credentials, faults, token
//! requests, sends per transport, outbox depth, sync lag, alerts, restarts) on a piecewise
//! scale, with a `<title>` on every mark and shapes that differ where colours do.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};

use super::scale::Scale;
use crate::check::{Grade, Verdict};
use crate::time::rfc3339;
use crate::trace::{Lane, Mark, MarkKind, Trace};

/// The SVG's width, px.
pub const WIDTH: f64 = 1200.0;
/// Where the plot starts, after the lane labels.
const LEFT: f64 = 150.0;
/// Room for the axis at the top.
const TOP: f64 = 34.0;

/// A marker's shape: colour is never the only signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Circle,
    Cross,
    TriangleUp,
    TriangleDown,
    Square,
    Diamond,
    Bar,
}

fn shape(kind: MarkKind) -> Shape {
    match kind {
        MarkKind::TokenOk | MarkKind::SendOk => Shape::Circle,
        MarkKind::TokenCredential | MarkKind::SendFailed => Shape::Cross,
        MarkKind::TokenTransient | MarkKind::AlertTrigger => Shape::TriangleUp,
        MarkKind::AlertResolve => Shape::TriangleDown,
        MarkKind::TokenThrottled => Shape::Square,
        MarkKind::SendUnknown | MarkKind::Rotation | MarkKind::CredentialChange => Shape::Diamond,
        MarkKind::Restart => Shape::Bar,
    }
}

/// The CSS class of a mark kind (colours live in the stylesheet, for screen and print).
pub fn class(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::TokenOk | MarkKind::SendOk => "ok",
        MarkKind::TokenCredential | MarkKind::SendFailed => "bad",
        MarkKind::TokenTransient | MarkKind::SendUnknown => "warn",
        MarkKind::TokenThrottled => "throttle",
        MarkKind::AlertTrigger => "alert",
        MarkKind::AlertResolve => "resolve",
        MarkKind::Rotation => "rotate",
        MarkKind::CredentialChange => "bad",
        MarkKind::Restart => "restart",
    }
}

/// The height of a lane, px.
fn height(lane: Lane) -> f64 {
    match lane {
        Lane::Outbox => 60.0,
        Lane::Sync => 40.0,
        _ => 26.0,
    }
}

/// Each lane's top edge, px.
fn lane_tops() -> BTreeMap<Lane, f64> {
    let mut y = TOP;
    let mut tops = BTreeMap::new();
    for lane in Lane::ALL {
        tops.insert(lane, y);
        y += height(lane) + 6.0;
    }
    tops
}

/// The busy windows the scale expands: fault windows and the instants where something failed
/// or changed (a failed attempt, an alert, a step).
pub fn scale_for(trace: &Trace) -> Scale {
    let mut busy: Vec<(DateTime<Utc>, DateTime<Utc>)> = trace
        .windows
        .iter()
        .filter(|w| w.lane == Lane::Faults)
        .map(|w| (w.from, w.until))
        .collect();
    busy.extend(
        trace
            .marks
            .iter()
            .filter(|m| !matches!(m.kind, MarkKind::TokenOk | MarkKind::SendOk))
            .map(|m| (m.at, m.at)),
    );
    Scale::new(trace.start, trace.end, &busy, (LEFT, WIDTH - 10.0))
}

/// The timeline of a run; `checks` place the anchors failing checks link to.
pub fn svg(trace: &Trace, checks: &[Verdict], id: &str) -> Markup {
    let scale = scale_for(trace);
    let tops = lane_tops();
    let bottom = tops.values().last().copied().unwrap_or(TOP) + height(Lane::Restarts) + 4.0;
    let view = format!("0 0 {WIDTH} {bottom:.0}");
    let desc = describe(trace);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox=(view) role="img" class="timeline"
            aria-labelledby={ (id) "-title " (id) "-desc" } {
            title id={ (id) "-title" } { "Timeline from " (rfc3339(trace.start)) " to " (rfc3339(trace.end)) }
            desc id={ (id) "-desc" } { (desc) }
            (super::axis::axis(&scale, bottom))
            @for lane in Lane::ALL {
                (lane_frame(lane, tops[&lane]))
            }
            (windows(trace, &scale, &tops))
            (marks(trace, &scale, &tops))
            (outbox(trace, &scale, tops[&Lane::Outbox]))
            (sync_lag(trace, &scale, tops[&Lane::Sync]))
            (anchors(checks, &scale, bottom))
        }
    }
}

/// The SVG's `<desc>`: what it shows, in numbers.
fn describe(trace: &Trace) -> String {
    let count = |kind: MarkKind| trace.marks.iter().filter(|m| m.kind == kind).count();
    format!(
        "Lanes top to bottom: {}. {} token requests issued a token, {} were refused for the credential, {} failed for a while, {} were throttled; {} sends accepted, {} failed, {} with an unknown outcome; {} alerts triggered and {} resolved; peak outbox depth {}. The scale is piecewise: quiet stretches are compressed (hatched on the axis).",
        Lane::ALL.map(Lane::label).join(", "),
        count(MarkKind::TokenOk),
        count(MarkKind::TokenCredential),
        count(MarkKind::TokenTransient),
        count(MarkKind::TokenThrottled),
        count(MarkKind::SendOk),
        count(MarkKind::SendFailed),
        count(MarkKind::SendUnknown),
        count(MarkKind::AlertTrigger),
        count(MarkKind::AlertResolve),
        trace.outbox.iter().map(|(_, d)| *d).max().unwrap_or(0),
    )
}

fn lane_frame(lane: Lane, top: f64) -> Markup {
    let h = height(lane);
    html! {
        g class="lane" data-lane=(lane.label()) {
            rect class="lane-bg" x=(LEFT) y=(top) width=(WIDTH - 10.0 - LEFT) height=(h) {}
            text class="lane-label" x="4" y=(format!("{:.1}", top + h / 2.0 + 4.0)) { (lane.label()) }
        }
    }
}

fn windows(trace: &Trace, scale: &Scale, tops: &BTreeMap<Lane, f64>) -> Markup {
    html! {
        @for w in &trace.windows {
            @let (x0, x1) = (scale.x(w.from), scale.x(w.until));
            @let class = if w.lane == Lane::Faults { "window fault" } else { "window cred" };
            rect class=(class) x=(f1(x0)) y=(f1(tops[&w.lane] + 4.0)) width=(f1((x1 - x0).max(1.0)))
                height=(f1(height(w.lane) - 8.0)) data-from=(rfc3339(w.from)) data-until=(rfc3339(w.until)) {
                title { (w.label) ": " (rfc3339(w.from)) " to " (rfc3339(w.until)) }
            }
        }
    }
}

/// Marks of one lane and kind that fall on the same pixel, drawn once.
#[derive(Debug)]
struct Pile<'a> {
    first: &'a Mark,
    last: DateTime<Utc>,
    count: usize,
}

/// Marks piled by lane, kind and pixel (alerts, steps and restarts one by one).
fn piles<'a>(trace: &'a Trace, scale: &Scale) -> BTreeMap<(Lane, MarkKind, i64, usize), Pile<'a>> {
    let mut piles: BTreeMap<(Lane, MarkKind, i64, usize), Pile<'a>> = BTreeMap::new();
    for (i, mark) in trace.marks.iter().enumerate() {
        let one_by_one = matches!(mark.lane, Lane::Alerts | Lane::Credentials | Lane::Restarts);
        let key = (
            mark.lane,
            mark.kind,
            scale.x(mark.at).round() as i64,
            if one_by_one { i } else { 0 },
        );
        piles
            .entry(key)
            .and_modify(|p| {
                p.count += 1;
                p.last = mark.at;
            })
            .or_insert(Pile {
                first: mark,
                last: mark.at,
                count: 1,
            });
    }
    piles
}

fn marks(trace: &Trace, scale: &Scale, tops: &BTreeMap<Lane, f64>) -> Markup {
    let piles = piles(trace, scale);
    html! {
        @for ((lane, kind, x, _), pile) in &piles {
            @let y = tops[lane] + height(*lane) / 2.0;
            @let m = pile.first;
            g class={ "mark " (class(*kind)) } data-lane=(lane.label()) data-kind=(kind.label())
                data-at=(rfc3339(m.at)) data-note=(m.note) data-count=(pile.count) {
                title {
                    (lane.label()) ": " (kind.label())
                    @if !m.note.is_empty() { " (" (m.note) ")" }
                    " at " (rfc3339(m.at))
                    @if pile.count > 1 { ", " (pile.count) " in all until " (rfc3339(pile.last)) }
                }
                (PreEscaped(marker(shape(*kind), *x as f64, y, height(*lane))))
            }
        }
    }
}

/// A marker's SVG at (x, y).
fn marker(shape: Shape, x: f64, y: f64, lane_height: f64) -> String {
    let r = 4.5;
    match shape {
        Shape::Circle => format!(r#"<circle cx="{x:.0}" cy="{y:.1}" r="{r}"/>"#),
        Shape::Square => format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{}" height="{}"/>"#,
            x - r,
            y - r,
            2.0 * r,
            2.0 * r
        ),
        Shape::Cross => format!(
            r#"<path class="stroke" d="M{:.1} {:.1}L{:.1} {:.1}M{:.1} {:.1}L{:.1} {:.1}"/>"#,
            x - r,
            y - r,
            x + r,
            y + r,
            x - r,
            y + r,
            x + r,
            y - r
        ),
        Shape::TriangleUp => format!(
            r#"<path d="M{x:.0} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z"/>"#,
            y - r - 1.0,
            x + r + 1.0,
            y + r,
            x - r - 1.0,
            y + r
        ),
        Shape::TriangleDown => format!(
            r#"<path d="M{x:.0} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z"/>"#,
            y + r + 1.0,
            x + r + 1.0,
            y - r,
            x - r - 1.0,
            y - r
        ),
        Shape::Diamond => format!(
            r#"<path d="M{x:.0} {:.1}L{:.1} {y:.1}L{x:.0} {:.1}L{:.1} {y:.1}Z"/>"#,
            y - r - 1.0,
            x + r + 1.0,
            y + r + 1.0,
            x - r - 1.0
        ),
        Shape::Bar => format!(
            r#"<rect x="{:.1}" y="{:.1}" width="3" height="{:.1}"/>"#,
            x - 1.5,
            y - lane_height / 2.0 + 2.0,
            lane_height - 4.0
        ),
    }
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// Outbox depth as a step line, one point per pixel column at most (its deepest value).
fn outbox(trace: &Trace, scale: &Scale, top: f64) -> Markup {
    let h = height(Lane::Outbox) - 6.0;
    let peak = trace
        .outbox
        .iter()
        .map(|(_, d)| *d)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let y = |d: u64| top + 3.0 + h - h * d as f64 / peak;
    let mut columns: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    let mut last = 0;
    for (at, depth) in &trace.outbox {
        let x = scale.x(*at).round() as i64;
        let entry = columns.entry(x).or_insert((*depth, *depth));
        entry.0 = entry.0.max(*depth);
        entry.1 = *depth;
        last = *depth;
    }
    let mut d = format!("M{LEFT:.0} {:.1}", y(0));
    let mut level = 0;
    for (x, (deepest, after)) in &columns {
        d.push_str(&format!(
            "L{x} {:.1}L{x} {:.1}L{x} {:.1}",
            y(level),
            y(*deepest),
            y(*after)
        ));
        level = *after;
    }
    d.push_str(&format!("L{:.0} {:.1}", WIDTH - 10.0, y(last)));
    html! {
        path class="depth" d=(d) {
            title { "outbox depth (submitted, not yet accepted), peak " (peak as u64) }
        }
        text class="small" x=(LEFT + 4.0) y=(f1(top + 12.0)) { "peak " (peak as u64) }
    }
}

/// Sync lag: a bar per pixel column (the longest lag there); a message never synced is a cross.
fn sync_lag(trace: &Trace, scale: &Scale, top: f64) -> Markup {
    let h = height(Lane::Sync) - 6.0;
    let peak = trace
        .sync_lag
        .iter()
        .filter_map(|(_, lag)| *lag)
        .max()
        .unwrap_or_default()
        .as_secs_f64()
        .max(1.0);
    let mut columns: BTreeMap<i64, (Option<std::time::Duration>, DateTime<Utc>)> = BTreeMap::new();
    for (at, lag) in &trace.sync_lag {
        let x = scale.x(*at).round() as i64;
        let entry = columns.entry(x).or_insert((*lag, *at));
        if lag.is_none() || entry.0.is_some_and(|l| lag.is_some_and(|n| n > l)) {
            *entry = (*lag, *at);
        }
    }
    html! {
        @if trace.sync_lag.is_empty() {
            text class="small" x=(LEFT + 4.0) y=(f1(top + h / 2.0 + 6.0)) { "no inbound messages in this run" }
        }
        @for (x, (lag, at)) in &columns {
            @match lag {
                Some(lag) => {
                    @let bar = (h * lag.as_secs_f64() / peak).max(1.0);
                    rect class="lag" x=(x) y=(f1(top + 3.0 + h - bar)) width="2" height=(f1(bar)) data-at=(rfc3339(*at)) {
                        title { "inbound message of " (rfc3339(*at)) " synced " (humantime::format_duration(*lag)) " later" }
                    }
                }
                None => g class="mark bad" data-at=(rfc3339(*at)) {
                    title { "inbound message of " (rfc3339(*at)) " never synced" }
                    (PreEscaped(marker(Shape::Cross, *x as f64, top + h / 2.0 + 3.0, h)))
                }
            }
        }
    }
}

/// A dashed line at each check's instant, with the id its table row links to.
fn anchors(checks: &[Verdict], scale: &Scale, bottom: f64) -> Markup {
    html! {
        @for (i, check) in checks.iter().enumerate() {
            @if let Some(at) = check.at {
                @let x = f1(scale.x(at));
                @let failed = check.verdict == Grade::Fail;
                g id={ "t-" (check.id.name()) } class={ "check-at" @if failed { " failed" } }
                    data-check=(check.id.name()) data-at=(rfc3339(at)) {
                    title { (check.id.name()) " is about " (rfc3339(at)) @if failed { ": it went wrong here" } }
                    line x1=(x) x2=(x) y1=(TOP) y2=(f1(bottom - 2.0)) {}
                    @if failed { text class="small" x=(x) y=(f1(bottom - 4.0 - 10.0 * (i % 3) as f64)) { (check.id.name()) } }
                }
            }
        }
    }
}

/// The key to the marks: each kind's shape and colour, with its words.
pub fn legend() -> Markup {
    let kinds = [
        MarkKind::TokenOk,
        MarkKind::TokenCredential,
        MarkKind::TokenTransient,
        MarkKind::TokenThrottled,
        MarkKind::SendOk,
        MarkKind::SendFailed,
        MarkKind::SendUnknown,
        MarkKind::AlertTrigger,
        MarkKind::AlertResolve,
        MarkKind::Rotation,
        MarkKind::Restart,
    ];
    html! {
        ul class="legend" {
            @for kind in kinds {
                li {
                    svg class={ "key mark " (class(kind)) } viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" {
                        (PreEscaped(marker(shape(kind), 8.0, 8.0, 14.0)))
                    }
                    " " (kind.label())
                }
            }
            li { svg class="key" viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" { rect class="window fault" x="0" y="3" width="16" height="10" {} } " fault window" }
            li { svg class="key" viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" { rect class="window cred" x="0" y="3" width="16" height="10" {} } " credential valid" }
            li { svg class="key" viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" { g class="compressed" { rect x="0" y="0" width="16" height="16" {} } } " compressed stretch of time" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckId;
    use crate::trace::Window;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a valid instant")
    }

    fn trace() -> Trace {
        let mark = |t: &str, lane, kind| Mark {
            at: at(t),
            lane,
            kind,
            note: String::new(),
        };
        Trace {
            start: at("2025-02-14T00:00:00Z"),
            end: at("2025-02-14T00:10:00Z"),
            marks: vec![
                mark("2025-02-14T00:01:00Z", Lane::Token, MarkKind::TokenOk),
                mark(
                    "2025-02-14T00:02:00Z",
                    Lane::Token,
                    MarkKind::TokenCredential,
                ),
                mark(
                    "2025-02-14T00:02:00.001Z",
                    Lane::Token,
                    MarkKind::TokenCredential,
                ),
                mark("2025-02-14T00:03:00Z", Lane::Alerts, MarkKind::AlertTrigger),
            ],
            windows: vec![Window {
                from: at("2025-02-14T00:02:00Z"),
                until: at("2025-02-14T00:04:00Z"),
                lane: Lane::Faults,
                label: "respond unavailable on entra token".into(),
            }],
            outbox: vec![
                (at("2025-02-14T00:02:00Z"), 1),
                (at("2025-02-14T00:05:00Z"), 0),
            ],
            ..Trace::default()
        }
    }

    #[test]
    fn every_mark_has_a_title_and_marks_on_one_pixel_are_drawn_once_with_their_count() {
        let svg = svg(&trace(), &[], "tl").into_string();
        assert!(svg.contains("<title id=\"tl-title\">"), "{svg}");
        assert!(svg.contains("<desc id=\"tl-desc\">"));
        let credential = svg.matches("data-kind=\"credential refused\"").count();
        assert_eq!(credential, 1, "two refusals 1 ms apart share a pixel");
        assert!(svg.contains("data-count=\"2\""));
        assert!(
            svg.contains("token requests: credential refused at 2025-02-14T00:02:00Z, 2 in all")
        );
        assert!(svg.contains("respond unavailable on entra token: 2025-02-14T00:02:00Z"));
        assert!(svg.contains("no inbound messages in this run"));
    }

    #[test]
    fn a_failed_check_gets_an_anchor_at_its_instant() {
        let check = Verdict {
            id: CheckId::LatencyAlertWithin,
            verdict: Grade::Fail,
            expected: Grade::Pass,
            observed: String::new(),
            detail: String::new(),
            at: Some(at("2025-02-14T00:07:00Z")),
        };
        let svg = svg(&trace(), &[check], "tl").into_string();
        assert!(svg.contains(
            "id=\"t-latency-alert-within\" class=\"check-at failed\" data-check=\"latency-alert-within\" data-at=\"2025-02-14T00:07:00Z\""
        ), "{svg}");
    }

    #[test]
    fn kinds_that_share_a_colour_differ_in_shape() {
        let kinds = [
            MarkKind::TokenOk,
            MarkKind::TokenCredential,
            MarkKind::TokenTransient,
            MarkKind::TokenThrottled,
            MarkKind::SendOk,
            MarkKind::SendFailed,
            MarkKind::SendUnknown,
            MarkKind::AlertTrigger,
            MarkKind::AlertResolve,
            MarkKind::Rotation,
            MarkKind::CredentialChange,
            MarkKind::Restart,
        ];
        for a in kinds {
            for b in kinds {
                if a != b && class(a) == class(b) && a.label() != b.label() {
                    let same_lane_family = matches!(
                        (a, b),
                        (MarkKind::TokenOk, MarkKind::SendOk)
                            | (MarkKind::SendOk, MarkKind::TokenOk)
                            | (MarkKind::TokenCredential, MarkKind::SendFailed)
                            | (MarkKind::SendFailed, MarkKind::TokenCredential)
                    );
                    assert!(
                        same_lane_family || shape(a) != shape(b),
                        "{a:?} and {b:?} look the same"
                    );
                }
            }
        }
    }
}
