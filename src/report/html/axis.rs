//! The timeline's axis: ticks labelled with their UTC instants, and each compressed stretch
//! hatched and labelled with how long it really is, so the piecewise scale is never hidden.

use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};

use super::scale::{Piece, Scale};

/// Least room between two labelled ticks, px.
const LABEL_GAP: f64 = 95.0;

/// The axis over the plot, and the tick lines down to `bottom`.
pub fn axis(scale: &Scale, bottom: f64) -> Markup {
    let ticks = ticks(scale);
    html! {
        g class="axis" {
            @for piece in scale.pieces.iter().filter(|p| p.compressed) {
                (compressed(piece, bottom))
            }
            @for (i, (at, x)) in ticks.iter().enumerate() {
                // The first and last labels hang inside the plot, not over its edges.
                @let anchor = if i == 0 { "start" } else if i + 1 == ticks.len() { "end" } else { "middle" };
                line class="tick" x1=(format!("{x:.1}")) x2=(format!("{x:.1}")) y1="26" y2=(format!("{:.0}", bottom)) {}
                text class="small" x=(format!("{x:.1}")) y="12" text-anchor=(anchor) { (label(*at)) }
            }
        }
    }
}

/// A hatched band over a compressed stretch, titled with its real length.
fn compressed(piece: &Piece, bottom: f64) -> Markup {
    let span = humantime::format_duration((piece.until - piece.from).to_std().unwrap_or_default())
        .to_string();
    let w = (piece.x1 - piece.x0).max(1.0);
    html! {
        g class="compressed" {
            title { "compressed: " (span) " from " (crate::time::rfc3339(piece.from)) " drawn in " (format!("{w:.0}")) " px" }
            rect x=(format!("{:.1}", piece.x0)) y="16" width=(format!("{w:.1}")) height=(format!("{:.0}", bottom - 16.0)) {}
            // The real length where it fits, with the word where that fits too.
            @if w > 110.0 {
                text class="small" x=(format!("{:.1}", piece.x0 + w / 2.0)) y="25" text-anchor="middle" { "≈ " (short(piece.until - piece.from)) " compressed" }
            } @else if w > 60.0 {
                text class="small" x=(format!("{:.1}", piece.x0 + w / 2.0)) y="25" text-anchor="middle" { "≈ " (short(piece.until - piece.from)) }
            }
        }
    }
}

/// Tick instants and their x: the run's start and end, and round instants inside the pieces
/// drawn to scale, kept only where a label fits.
fn ticks(scale: &Scale) -> Vec<(DateTime<Utc>, f64)> {
    let mut candidates: Vec<(DateTime<Utc>, f64)> = Vec::new();
    if let Some(first) = scale.pieces.first() {
        candidates.push((first.from, first.x0));
    }
    for piece in &scale.pieces {
        if !piece.compressed {
            let count = ((piece.x1 - piece.x0) / LABEL_GAP).floor() as i64;
            let step = round_step((piece.until - piece.from) / count.max(1) as i32);
            let mut at = ceil_to(piece.from, step);
            while at < piece.until {
                candidates.push((at, scale.x(at)));
                at += step;
            }
        }
    }
    if let Some(last) = scale.pieces.last() {
        candidates.push((last.until, last.x1));
    }
    candidates.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut kept: Vec<(DateTime<Utc>, f64)> = Vec::new();
    for c in candidates {
        if kept.last().is_none_or(|k| c.1 - k.1 >= LABEL_GAP) {
            kept.push(c);
        }
    }
    kept
}

/// The nearest step at or above `d` among round ones (1 s .. 30 d).
fn round_step(d: TimeDelta) -> TimeDelta {
    const STEPS_S: [i64; 16] = [
        1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21_600, 43_200, 86_400, 172_800, 604_800,
        2_592_000,
    ];
    let secs = d.num_seconds().max(1);
    let s = STEPS_S
        .into_iter()
        .find(|s| *s >= secs)
        .unwrap_or(2_592_000);
    TimeDelta::seconds(s)
}

/// `at` rounded up to a multiple of `step` since the Unix epoch.
fn ceil_to(at: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let s = step.num_seconds().max(1);
    let t = at.timestamp();
    let up = t.div_euclid(s) * s + if t.rem_euclid(s) == 0 { 0 } else { s };
    DateTime::from_timestamp(up, 0).unwrap_or(at)
}

/// A tick's label: date and time, UTC.
fn label(at: DateTime<Utc>) -> String {
    use chrono::Timelike as _;
    if at.second() == 0 {
        at.format("%m-%d %H:%M").to_string()
    } else {
        at.format("%m-%d %H:%M:%S").to_string()
    }
}

/// A length in its two largest units (`12d 3h`).
fn short(d: TimeDelta) -> String {
    let text = humantime::format_duration(
        TimeDelta::seconds(d.num_seconds())
            .to_std()
            .unwrap_or_default(),
    )
    .to_string();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_leave_room_for_their_labels() {
        let start: DateTime<Utc> = "2025-01-01T00:00:00Z".parse().expect("valid");
        let scale = Scale::new(start, start + TimeDelta::minutes(10), &[], (150.0, 1190.0));
        let ticks = ticks(&scale);
        assert!(ticks.len() >= 5, "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[1].1 - w[0].1 >= LABEL_GAP));
    }
}
