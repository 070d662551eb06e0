//! The fault coverage map: which fault kinds reached which protocol stages across a set of
//! runs, read from each run's trace (the journal entries a fault shaped), so a suite's blind
//! spots show as empty cells. Data only; `report::html::coverage` draws it.

use std::collections::BTreeMap;

use crate::runner::ScenarioReport;
use crate::trace::{FaultRow, Stage};

/// Runs that reached a stage with a fault: (index into the runs, requests it shaped).
pub type Cell = Vec<(usize, u64)>;

/// The map of a set of runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Each run's name and file, in the order given.
    pub runs: Vec<(String, String)>,
    /// The cells with at least one run.
    pub cells: BTreeMap<(FaultRow, Stage), Cell>,
}

impl Coverage {
    /// The map of `reports` (skipped ones reach nothing).
    pub fn of<R: std::borrow::Borrow<ScenarioReport>>(reports: &[R]) -> Coverage {
        let reports: Vec<&ScenarioReport> = reports.iter().map(|r| r.borrow()).collect();
        let mut cells: BTreeMap<(FaultRow, Stage), Cell> = BTreeMap::new();
        for (i, report) in reports.iter().enumerate() {
            for (cell, hits) in &report.trace.hits {
                cells.entry(*cell).or_default().push((i, *hits));
            }
        }
        Coverage {
            runs: reports
                .iter()
                .map(|r| (r.name.clone(), r.file.clone()))
                .collect(),
            cells,
        }
    }

    /// The runs in a cell (empty: a blind spot).
    pub fn cell(&self, row: FaultRow, stage: Stage) -> &[(usize, u64)] {
        self.cells.get(&(row, stage)).map_or(&[], Vec::as_slice)
    }

    /// Every empty cell that some run could fill ([`FaultRow::applies_to`]), row by row.
    pub fn empty(&self) -> Vec<(FaultRow, Stage)> {
        FaultRow::all()
            .into_iter()
            .flat_map(|row| Stage::ALL.map(|stage| (row, stage)))
            .filter(|(row, stage)| row.applies_to(*stage) && self.cell(*row, *stage).is_empty())
            .collect()
    }

    /// How many cells some run could fill.
    pub fn possible() -> usize {
        FaultRow::all()
            .into_iter()
            .flat_map(|row| Stage::ALL.map(|stage| (row, stage)))
            .filter(|(row, stage)| row.applies_to(*stage))
            .count()
    }

    /// The map as JSON for CI: every cell with the files that reached it, and the empty ones.
    pub fn json(&self) -> serde_json::Value {
        let cells: Vec<serde_json::Value> = self
            .cells
            .iter()
            .map(|((row, stage), runs)| {
                serde_json::json!({
                    "fault": row.name(),
                    "stage": stage.name(),
                    "scenarios": runs.iter().map(|(i, hits)| serde_json::json!({
                        "file": self.runs[*i].1, "requests": hits
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let empty: Vec<String> = self
            .empty()
            .iter()
            .map(|(row, stage)| format!("{}@{}", row.name(), stage.name()))
            .collect();
        serde_json::json!({
            "faults": FaultRow::all().iter().map(|r| r.name()).collect::<Vec<_>>(),
            "stages": Stage::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "possible": Coverage::possible(),
            "cells": cells,
            "empty": empty,
        })
    }
}

/// A cell named `KIND@STAGE` (`respond@token-5xx`, `credential@token-invalid-client`).
pub fn parse_cell(text: &str) -> Result<(FaultRow, Stage), String> {
    let (kind, stage) = text
        .split_once('@')
        .ok_or_else(|| format!("{text}: expected KIND@STAGE"))?;
    let row = FaultRow::all()
        .into_iter()
        .find(|r| r.name() == kind)
        .ok_or_else(|| {
            let names: Vec<&str> = FaultRow::all().iter().map(|r| r.name()).collect();
            format!(
                "{text}: unknown fault kind {kind}, expected one of {}",
                names.join(", ")
            )
        })?;
    let stage = Stage::ALL
        .into_iter()
        .find(|s| s.name() == stage)
        .ok_or_else(|| {
            let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
            format!(
                "{text}: unknown stage {stage}, expected one of {}",
                names.join(", ")
            )
        })?;
    if !row.applies_to(stage) {
        return Err(format!(
            "{text}: {} never reaches {}",
            row.name(),
            stage.name()
        ));
    }
    Ok((row, stage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultName;
    use crate::trace::TokenAnswer;

    #[test]
    fn a_cell_parses_from_its_names_and_a_typo_names_the_choices() {
        assert_eq!(
            parse_cell("respond@token-5xx"),
            Ok((
                FaultRow::Fault(FaultName::Respond),
                Stage::Token(TokenAnswer::Unavailable)
            ))
        );
        let error = parse_cell("respnd@smtp-auth").expect_err("a typo");
        assert!(error.contains("latency"), "{error}");
        assert!(parse_cell("timeout").is_err());
    }

    #[test]
    fn every_possible_cell_without_a_run_is_empty_and_an_impossible_one_cannot_be_required() {
        let map = Coverage::default();
        assert_eq!(map.empty().len(), Coverage::possible());
        assert!(Coverage::possible() < FaultRow::all().len() * Stage::ALL.len());
        let error = parse_cell("tls_failure@graph-delta").expect_err("impossible");
        assert!(error.contains("never reaches"), "{error}");
    }
}
