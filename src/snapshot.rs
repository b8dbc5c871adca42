//! A configuration checked as a whole: its catalog, its compiled policies, and every problem
//! of both. `validate` reports a snapshot; `plan` compares two and evaluates their policies.

use crate::diag::Diagnostic;
use crate::model::{Catalog, Loaded};
use crate::policy::{Binding, PolicySet, compile};

pub struct Snapshot {
    pub catalog: Catalog,
    pub policies: PolicySet,
    /// Problems of the catalog and of its policies, sorted.
    pub diagnostics: Vec<Diagnostic>,
}

impl Snapshot {
    pub fn new(catalog: Catalog) -> Snapshot {
        let (policies, mut diagnostics) = compile(&catalog);
        diagnostics.extend(catalog.diagnostics.iter().cloned());
        diagnostics.sort();
        diagnostics.dedup();
        Snapshot {
            catalog,
            policies,
            diagnostics,
        }
    }

    /// Every (policy, resource) pair where a policy applies: what a full evaluation evaluates.
    pub fn applicable(&self) -> impl Iterator<Item = (&Binding, &Loaded)> {
        self.catalog.resources().iter().flat_map(move |loaded| {
            self.policies
                .applying_to(loaded)
                .map(move |binding| (binding, loaded))
        })
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}
