//! The timeline's time scale: piecewise linear, with quiet stretches compressed and the
//! stretches where something went wrong expanded, so a 10-minute and a 45-day run both read.

use chrono::{DateTime, TimeDelta, Utc};

/// One piece of the scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    /// Its first instant.
    pub from: DateTime<Utc>,
    /// Its last instant.
    pub until: DateTime<Utc>,
    /// Its left edge, px.
    pub x0: f64,
    /// Its right edge, px.
    pub x1: f64,
    /// Whether it is drawn shorter than its share of the run (a quiet stretch).
    pub compressed: bool,
}

/// A piecewise linear map from instants to x.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// The pieces, left to right, covering the run.
    pub pieces: Vec<Piece>,
}

/// Of the width, the share quiet stretches get when there are busy ones.
const QUIET_SHARE: f64 = 0.2;

impl Scale {
    /// A scale over `[start, end]` drawn in `[x0, x1]`, expanding the `busy` windows (merged
    /// here, each widened by 1/500 of the run on both sides).
    pub fn new(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        busy: &[(DateTime<Utc>, DateTime<Utc>)],
        (x0, x1): (f64, f64),
    ) -> Scale {
        let end = end.max(start + TimeDelta::seconds(1));
        let total = (end - start).num_milliseconds() as f64;
        let pad = TimeDelta::milliseconds((total / 500.0) as i64);
        let windows = merge(start, end, busy, pad);
        let quiet_ms = total - windows.iter().map(|(a, b)| ms(*b - *a)).sum::<f64>();
        // Expand only when the busy windows are a small part of the run.
        let expand = !windows.is_empty() && quiet_ms > total * 0.4;
        let width = x1 - x0;
        let (busy_px, quiet_px) = if expand {
            (width * (1.0 - QUIET_SHARE), width * QUIET_SHARE)
        } else {
            (width, width)
        };
        let busy_ms = total - quiet_ms;
        let mut pieces = Vec::new();
        let mut x = x0;
        let mut at = start;
        let mut push = |from: DateTime<Utc>, until: DateTime<Utc>, busy: bool, x: &mut f64| {
            let span = ms(until - from);
            let w = match (expand, busy) {
                (false, _) => width * span / total,
                (true, true) => busy_px * span / busy_ms,
                (true, false) => quiet_px * span / quiet_ms,
            };
            pieces.push(Piece {
                from,
                until,
                x0: *x,
                x1: *x + w,
                compressed: expand && !busy,
            });
            *x += w;
        };
        for (from, until) in windows {
            if from > at {
                push(at, from, false, &mut x);
            }
            push(from, until, true, &mut x);
            at = until;
        }
        if at < end {
            push(at, end, false, &mut x);
        }
        Scale { pieces }
    }

    /// The x of `at` (clamped to the run).
    pub fn x(&self, at: DateTime<Utc>) -> f64 {
        let piece = self
            .pieces
            .iter()
            .find(|p| at <= p.until)
            .or(self.pieces.last())
            .expect("a scale has at least one piece");
        let span = ms(piece.until - piece.from).max(1.0);
        let along = ms(at.clamp(piece.from, piece.until) - piece.from) / span;
        piece.x0 + (piece.x1 - piece.x0) * along
    }
}

fn ms(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64
}

/// The busy windows widened by `pad`, clipped to the run, sorted and merged.
fn merge(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    busy: &[(DateTime<Utc>, DateTime<Utc>)],
    pad: TimeDelta,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = busy
        .iter()
        .map(|(a, b)| ((*a - pad).max(start), (*b + pad).min(end)))
        .filter(|(a, b)| a < b)
        .collect();
    windows.sort();
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (a, b) in windows {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a valid instant")
    }

    #[test]
    fn a_short_busy_window_in_a_long_run_gets_most_of_the_width() {
        let (start, end) = (at("2025-01-01T00:00:00Z"), at("2025-02-15T06:00:00Z"));
        let busy = [(at("2025-02-14T11:30:00Z"), at("2025-02-15T02:08:00Z"))];
        let scale = Scale::new(start, end, &busy, (0.0, 1000.0));
        let width = scale.x(at("2025-02-15T02:08:00Z")) - scale.x(at("2025-02-14T11:30:00Z"));
        assert!(width > 500.0, "the incident is drawn {width} px of 1000");
        assert!(scale.pieces.iter().any(|p| p.compressed));
        assert!((scale.x(end) - 1000.0).abs() < 1e-6);
        assert!(scale.x(start).abs() < 1e-6);
    }

    #[test]
    fn a_run_with_nothing_busy_is_linear() {
        let (start, end) = (at("2025-01-01T00:00:00Z"), at("2025-01-01T00:10:00Z"));
        let scale = Scale::new(start, end, &[], (0.0, 600.0));
        assert!((scale.x(at("2025-01-01T00:05:00Z")) - 300.0).abs() < 1e-6);
        assert!(scale.pieces.iter().all(|p| !p.compressed));
    }

    #[test]
    fn x_grows_with_time() {
        let (start, end) = (at("2025-01-01T00:00:00Z"), at("2025-01-10T00:00:00Z"));
        let busy = [(at("2025-01-05T00:00:00Z"), at("2025-01-05T01:00:00Z"))];
        let scale = Scale::new(start, end, &busy, (0.0, 900.0));
        let mut last = -1.0;
        for h in 0..=216 {
            let x = scale.x(start + TimeDelta::hours(h));
            assert!(x >= last, "x fell at hour {h}");
            last = x;
        }
    }
}
