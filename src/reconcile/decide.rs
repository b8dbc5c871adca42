//! What to do with a head, and why: a pure function of the commit in force, the head, its
//! review, the evidence gathered for its gates and the time. `plan` shows it; a reconcile
//! carries it out.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::gate::{
    self, ChangeFacts, Evidence, GateOutcome, GateReport, Governing, OpenReview, OverrideRecord,
    RenewalHold,
};
use crate::model::{Catalog, Kind, Spec};
use crate::report::PlanReport;

/// What becomes of the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Verdict {
    /// Apply it: valid, nothing blocks it, every gate passes.
    Apply,
    /// A new `deny` finding or a failing gate stops it; the commit in force stays.
    Blocked,
    /// Only a gate's window is closed: it is applied, without a new commit, when it opens.
    Pending {
        #[serde(rename = "opensAt")]
        opens_at: DateTime<Utc>,
    },
    /// The head is not a valid configuration.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Apply => "apply",
            Verdict::Blocked => "blocked",
            Verdict::Pending { .. } => "pending",
            Verdict::Failed => "failed",
        }
    }
}

/// What a decision is made on: plain values, read beforehand.
pub struct Facts<'a> {
    /// The catalog in force; empty when nothing is.
    pub in_force: &'a Catalog,
    /// Whether a commit is in force. When none is, the head's gates govern.
    pub anything_in_force: bool,
    pub head: &'a Catalog,
    /// The review of the head against the commit in force; `None` when the head is the
    /// commit in force.
    pub review: Option<&'a PlanReport>,
    pub evidence: &'a Evidence,
    /// Overrides whose review was open before this change.
    pub open_reviews: &'a [OpenReview],
    pub now: DateTime<Utc>,
}

/// The decision about a head.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Why the head is not applied, for people: its errors, the findings that block it, the
    /// gates it fails or waits for.
    pub reasons: Vec<String>,
    /// Each governing gate's decision, in name order.
    pub gates: Vec<GateReport>,
    /// Gates whose closed windows hold renewals back.
    pub holds: Vec<RenewalHold>,
    /// Overrides the head uses (only when it is applied).
    pub overrides: Vec<OverrideRecord>,
    /// Overrides still waiting for their review after this change.
    pub open_reviews: Vec<OpenReview>,
}

/// Decides what becomes of the head.
pub fn decide(facts: &Facts<'_>) -> Decision {
    let (governing_catalog, governing) = if facts.anything_in_force {
        (facts.in_force, Governing::InForce)
    } else {
        (facts.head, Governing::Head)
    };
    let holds = gate::renewal_holds(governing_catalog, facts.now);
    let open_reviews = gate::reviews_after(facts.open_reviews, facts.evidence, facts.now);
    let mut decision = Decision {
        verdict: Verdict::Apply,
        reasons: Vec::new(),
        gates: Vec::new(),
        holds,
        overrides: Vec::new(),
        open_reviews,
    };
    let Some(review) = facts.review else {
        return decision;
    };
    if !review.valid {
        decision.verdict = Verdict::Failed;
        decision.reasons = review.errors().map(ToString::to_string).collect();
        return decision;
    }
    let affected = gate::affected(&review.resources, facts.in_force, facts.head);
    let change = ChangeFacts {
        affected: &affected,
        findings: &review.findings,
    };
    decision.gates = governing_catalog
        .of_kind(Kind::Gate)
        .filter_map(|loaded| match &loaded.resource.spec {
            Spec::Gate(spec) => Some(gate::judge(
                loaded,
                spec,
                governing,
                &change,
                facts.evidence,
                facts.now,
            )),
            _ => None,
        })
        .collect();
    decision.gates.sort_by(|a, b| a.name.cmp(&b.name));
    decision.reasons = review
        .findings
        .iter()
        .filter(|f| f.blocks())
        .map(|f| {
            format!(
                "new deny finding: {} {}: {}",
                f.policy,
                f.resource_id(),
                f.message
            )
        })
        .collect();
    let fails = |g: &&GateReport| g.outcome == GateOutcome::Fail;
    decision.reasons.extend(
        decision
            .gates
            .iter()
            .filter(fails)
            .map(|g| format!("gate {}", g.line())),
    );
    // The change waits for every closed window; at the last opening it is decided again.
    let opens_at = decision
        .gates
        .iter()
        .filter(|g| g.outcome == GateOutcome::Pending)
        .filter_map(|g| g.opens_at)
        .max();
    decision.verdict = match opens_at {
        _ if !decision.reasons.is_empty() => Verdict::Blocked,
        Some(opens_at) => {
            decision.reasons.extend(
                decision
                    .gates
                    .iter()
                    .filter(|g| g.outcome == GateOutcome::Pending)
                    .map(|g| format!("gate {}", g.line())),
            );
            Verdict::Pending { opens_at }
        }
        None => Verdict::Apply,
    };
    if decision.verdict == Verdict::Apply {
        decision.overrides = decision
            .gates
            .iter()
            .filter_map(|g| g.override_.as_ref()?.used.clone())
            .collect();
        decision
            .open_reviews
            .extend(decision.overrides.iter().map(|record| OpenReview {
                record: record.clone(),
                overdue: false,
            }));
    }
    decision
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::gate::{CommitFacts, Met, RequirementEvidence};
    use crate::git::CommitInfo;
    use crate::model::ApprovalSource;
    use crate::snapshot::Snapshot;
    use crate::trust::{Approval, SignatureCheck};

    const ISSUERS: &str = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: root}\nspec:\n  selfSigned: {commonName: Root}\n";

    fn cert(name: &str, env: &str, names: &str) -> String {
        format!(
            "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {{name: {name}, labels: {{env: {env}}}}}\nspec:\n  issuerRef: root\n  dnsNames: [{names}]\n  target: web\n"
        )
    }

    fn gate(name: &str, require: &str) -> String {
        format!(
            "apiVersion: gitward/v1\nkind: Gate\nmetadata: {{name: {name}}}\nspec:\n  appliesTo: {{kinds: [Certificate], selector: {{env: prod}}}}\n  require:\n{require}  override: {{by: [lead@example.com], reviewWithin: 24h}}\n"
        )
    }

    const TWO_APPROVALS: &str = "    approvals: {count: 2, from: [alice@example.com, bob@example.com, carol@example.com]}\n";

    fn catalog(files: &[(&str, &str)]) -> Catalog {
        let catalog = Catalog::from_texts(files);
        assert_eq!(catalog.diagnostics, vec![]);
        catalog
    }

    fn commit(sha: char) -> CommitInfo {
        CommitInfo {
            sha: sha.to_string().repeat(40),
            tree: git2::Oid::ZERO_SHA1,
            author: "Dev".to_owned(),
            email: "dev@example.com".to_owned(),
            summary: String::new(),
            message: String::new(),
            signature: None,
        }
    }

    /// 2026-12-01 (a Tuesday) at `hour`:00 UTC.
    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, hour, 0, 0)
            .single()
            .expect("a time")
    }

    fn signed(principal: &str) -> SignatureCheck {
        SignatureCheck {
            verified: true,
            principal: Some(principal.to_owned()),
            key_fingerprint: Some(format!("SHA256:{principal}")),
            problem: None,
        }
    }

    fn head_commit(
        author: &str,
        signature: SignatureCheck,
        trailers: &[(&str, &str)],
    ) -> CommitFacts {
        CommitFacts {
            sha: "b".repeat(40),
            author_email: author.to_owned(),
            committer_email: author.to_owned(),
            signature,
            trailers: trailers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn approval(approver: &str, refused: Option<&str>) -> Approval {
        Approval {
            gate: "prod".to_owned(),
            approver: approver.to_owned(),
            source: ApprovalSource::Signatures,
            key_fingerprint: Some(format!("SHA256:{approver}")),
            refused: refused.map(str::to_owned),
            at: None,
            url: None,
        }
    }

    fn evidence(commits: Vec<CommitFacts>, approvals: Vec<Approval>) -> Evidence {
        Evidence {
            commits,
            complete: true,
            approvals,
            ..Evidence::default()
        }
    }

    /// Decides on the change from `base` to `head`, with `base` in force when `in_force`.
    fn decided(
        base: &[(&str, &str)],
        head: &[(&str, &str)],
        in_force: bool,
        evidence: &Evidence,
        now: DateTime<Utc>,
    ) -> Decision {
        let (base_snapshot, head_snapshot) =
            (Snapshot::new(catalog(base)), Snapshot::new(catalog(head)));
        let (base, head) = (&base_snapshot.catalog, &head_snapshot.catalog);
        let review = crate::review::review(
            (&commit('a'), &base_snapshot),
            (&commit('b'), &head_snapshot),
            now.date_naive(),
        );
        decide(&Facts {
            in_force: base,
            anything_in_force: in_force,
            head,
            review: Some(&review),
            evidence,
            open_reviews: &[],
            now,
        })
    }

    /// Decides on a change of the names of the prod certificate `api`, with `gate` in force
    /// and unchanged.
    fn api_renamed(gate: &str, evidence: &Evidence, now: DateTime<Utc>) -> Decision {
        let (api, api2) = (
            cert("api", "prod", "api.example.com"),
            cert("api", "prod", "v2.example.com"),
        );
        decided(
            &[("i.yaml", ISSUERS), ("api.yaml", &api), ("g.yaml", gate)],
            &[("i.yaml", ISSUERS), ("api.yaml", &api2), ("g.yaml", gate)],
            true,
            evidence,
            now,
        )
    }

    fn outcomes(decision: &Decision) -> Vec<(String, GateOutcome)> {
        decision
            .gates
            .iter()
            .map(|g| (g.name.clone(), g.outcome))
            .collect()
    }

    #[test]
    fn the_gate_in_force_judges_a_change_that_deletes_or_weakens_it() {
        let api = cert("api", "prod", "api.example.com");
        let api2 = cert("api", "prod", "api.example.com, v2.example.com");
        let strict = gate("prod", TWO_APPROVALS);
        let weak = gate("prod", "    approvals: {count: 1}\n");
        let base = [
            ("i.yaml", ISSUERS),
            ("api.yaml", api.as_str()),
            ("g.yaml", strict.as_str()),
        ];
        let one = evidence(
            vec![head_commit(
                "dev@example.com",
                SignatureCheck::default(),
                &[],
            )],
            vec![approval("alice@example.com", None)],
        );
        for head in [
            vec![("i.yaml", ISSUERS), ("api.yaml", api2.as_str())],
            vec![
                ("i.yaml", ISSUERS),
                ("api.yaml", api2.as_str()),
                ("g.yaml", weak.as_str()),
            ],
        ] {
            let decision = decided(&base, &head, true, &one, at(10));
            assert_eq!(decision.verdict, Verdict::Blocked);
            assert_eq!(
                outcomes(&decision),
                [("prod".to_owned(), GateOutcome::Fail)]
            );
            assert_eq!(decision.gates[0].governing, Governing::InForce);
            assert!(
                decision.reasons[0].contains("1 of 2 approvals"),
                "{:?}",
                decision.reasons
            );
        }
        // With nothing in force, the head's own gate judges it.
        let head = [
            ("i.yaml", ISSUERS),
            ("api.yaml", api2.as_str()),
            ("g.yaml", strict.as_str()),
        ];
        let decision = decided(&[("i.yaml", ISSUERS)], &head, false, &one, at(10));
        assert_eq!(decision.verdict, Verdict::Blocked);
        assert_eq!(decision.gates[0].governing, Governing::Head);
    }

    #[test]
    fn a_gate_judges_only_changes_to_what_it_applies_to() {
        let strict = gate("prod", TWO_APPROVALS);
        let (web, web2) = (
            cert("web", "staging", "web.example.com"),
            cert("web", "staging", "web2.example.com"),
        );
        let api = cert("api", "prod", "api.example.com");
        let base = [
            ("i.yaml", ISSUERS),
            ("web.yaml", web.as_str()),
            ("api.yaml", api.as_str()),
            ("g.yaml", strict.as_str()),
        ];
        let head = [
            ("i.yaml", ISSUERS),
            ("web.yaml", web2.as_str()),
            ("api.yaml", api.as_str()),
            ("g.yaml", strict.as_str()),
        ];
        let decision = decided(&base, &head, true, &evidence(vec![], vec![]), at(10));
        assert_eq!(decision.verdict, Verdict::Apply);
        assert_eq!(
            outcomes(&decision),
            [("prod".to_owned(), GateOutcome::NotApplicable)]
        );
        // A deleted resource is matched by its labels in the base.
        let deleted = [
            ("i.yaml", ISSUERS),
            ("web.yaml", web.as_str()),
            ("g.yaml", strict.as_str()),
        ];
        let decision = decided(&base, &deleted, true, &evidence(vec![], vec![]), at(10));
        assert_eq!(decision.verdict, Verdict::Blocked);
        assert_eq!(decision.gates[0].affected, ["Certificate/api"]);
    }

    #[test]
    fn approvals_count_once_per_listed_principal_who_did_not_write_the_change() {
        let strict = gate("prod", TWO_APPROVALS);
        let writer = head_commit("alice@example.com", SignatureCheck::default(), &[]);
        let approvals = vec![
            approval("alice@example.com", None),
            approval(
                "bob@example.com",
                Some("signed by a key the host does not list"),
            ),
            approval("mallory@example.com", None),
            approval("carol@example.com", None),
            approval("carol@example.com", None),
        ];
        let decision = api_renamed(
            &strict,
            &evidence(vec![writer.clone()], approvals.clone()),
            at(10),
        );
        assert_eq!(decision.verdict, Verdict::Blocked);
        let RequirementEvidence::Approvals {
            counted,
            approvals: judged,
            ..
        } = &decision.gates[0].requirements[0].evidence
        else {
            panic!("approvals evidence");
        };
        assert_eq!(counted, &["carol@example.com"]);
        let why: Vec<Option<&str>> = judged.iter().map(|a| a.refused.as_deref()).collect();
        assert_eq!(
            why,
            [
                Some("wrote or committed part of the change (separation of duties)"),
                Some("signed by a key the host does not list"),
                Some("not one of the gate's approvers"),
                None,
                Some("already counted"),
            ]
        );
        // Bob's verified approval makes two.
        let mut approvals = approvals;
        approvals[1].refused = None;
        let decision = api_renamed(
            &strict,
            &evidence(vec![writer.clone()], approvals.clone()),
            at(10),
        );
        assert_eq!(decision.verdict, Verdict::Apply);
        // An incomplete history cannot show who wrote the change: nothing counts.
        let mut partial = evidence(vec![writer], approvals);
        partial.complete = false;
        assert_eq!(
            api_renamed(&strict, &partial, at(10)).verdict,
            Verdict::Blocked
        );
    }

    #[test]
    fn trailers_count_only_where_the_host_trusts_them_and_are_unverified() {
        let trailers = gate("prod", "    approvals: {count: 1, source: trailers}\n");
        let commits = vec![head_commit(
            "dev@example.com",
            SignatureCheck::default(),
            &[("Approved-by", "Bob <bob@example.com>")],
        )];
        let mut evidence = evidence(commits, vec![]);
        assert_eq!(
            api_renamed(&trailers, &evidence, at(10)).verdict,
            Verdict::Blocked
        );
        evidence.trust_trailers = true;
        let decision = api_renamed(&trailers, &evidence, at(10));
        assert_eq!(decision.verdict, Verdict::Apply);
        let requirement = &decision.gates[0].requirements[0];
        assert_eq!(
            requirement.summary,
            "1 of 1 approval: bob@example.com (unverified trailers)"
        );
    }

    #[test]
    fn a_closed_window_makes_a_change_pending_until_it_opens_unless_it_also_fails() {
        let windowed = gate(
            "prod",
            "    approvals: {count: 1}\n    window: {timezone: Europe/Berlin, allow: [{days: [Mon, Tue], from: '09:00', to: '16:00'}]}\n",
        );
        let approved = evidence(vec![], vec![approval("carol@example.com", None)]);
        // Tuesday 18:00 UTC is 19:00 in Berlin: closed until Monday 09:00 CET.
        let decision = api_renamed(&windowed, &approved, at(18));
        let monday = Utc
            .with_ymd_and_hms(2026, 12, 7, 8, 0, 0)
            .single()
            .expect("a time");
        assert_eq!(decision.verdict, Verdict::Pending { opens_at: monday });
        assert_eq!(decision.gates[0].requirements[1].met, Met::Waiting);
        assert_eq!(
            api_renamed(&windowed, &approved, at(10)).verdict,
            Verdict::Apply
        );
        let unapproved = evidence(vec![], vec![]);
        assert_eq!(
            api_renamed(&windowed, &unapproved, at(18)).verdict,
            Verdict::Blocked
        );
    }

    #[test]
    fn an_override_counts_only_signed_by_a_listed_principal_with_a_reason() {
        let strict = gate("prod", TWO_APPROVALS);
        let trailer = [("Gate-Override", "prod key compromise, rotating now")];
        let cases = [
            (SignatureCheck::default(), &trailer[..], Verdict::Blocked),
            (signed("dev@example.com"), &trailer[..], Verdict::Blocked),
            (
                signed("lead@example.com"),
                &[("Gate-Override", "prod")][..],
                Verdict::Blocked,
            ),
            (
                signed("lead@example.com"),
                &[("Gate-Override", "other urgent")][..],
                Verdict::Blocked,
            ),
            (signed("lead@example.com"), &trailer[..], Verdict::Apply),
        ];
        for (signature, trailers, verdict) in cases {
            let commits = vec![head_commit("lead@example.com", signature, trailers)];
            let decision = api_renamed(&strict, &evidence(commits, vec![]), at(10));
            assert_eq!(decision.verdict, verdict, "{trailers:?}");
            if verdict == Verdict::Apply {
                assert_eq!(decision.gates[0].outcome, GateOutcome::Overridden);
                let used = &decision.overrides[0];
                assert_eq!(
                    (used.principal.as_str(), used.reason.as_str()),
                    ("lead@example.com", "key compromise, rotating now")
                );
                assert_eq!(used.review_due, at(10) + chrono::Duration::hours(24));
                assert_eq!(decision.open_reviews.len(), 1);
            } else {
                assert!(decision.overrides.is_empty() && decision.open_reviews.is_empty());
            }
        }
    }

    #[test]
    fn a_review_by_another_signed_principal_closes_an_override_and_late_ones_are_overdue() {
        let record = OverrideRecord {
            gate: "prod".to_owned(),
            commit: "c".repeat(40),
            principal: "lead@example.com".to_owned(),
            key_fingerprint: "SHA256:lead".to_owned(),
            reason: "incident".to_owned(),
            at: at(1),
            review_due: at(5),
        };
        let open = [OpenReview {
            record,
            overdue: false,
        }];
        let review = |signature: SignatureCheck, sha: &str| {
            evidence(
                vec![head_commit(
                    "x@example.com",
                    signature,
                    &[("Override-Reviewed", sha)],
                )],
                vec![],
            )
        };
        let cases = [
            (review(signed("bob@example.com"), "ccccccc"), 0),
            (review(signed("bob@example.com"), "cccccc"), 1),
            (review(signed("lead@example.com"), "ccccccc"), 1),
            (review(SignatureCheck::default(), "ccccccc"), 1),
        ];
        for (evidence, left) in cases {
            assert_eq!(gate::reviews_after(&open, &evidence, at(2)).len(), left);
        }
        let later = gate::reviews_after(&open, &evidence(vec![], vec![]), at(6));
        assert!(later[0].overdue);
        // A short id that names two open overrides names neither, as git refuses it.
        let mut twin = open[0].clone();
        twin.record.commit = format!("{}{}", "c".repeat(7), "0".repeat(33));
        let both = [open[0].clone(), twin];
        let ambiguous = review(signed("bob@example.com"), "ccccccc");
        assert_eq!(gate::reviews_after(&both, &ambiguous, at(2)).len(), 2);
        let precise = review(signed("bob@example.com"), &"c".repeat(12));
        assert_eq!(gate::reviews_after(&both, &precise, at(2)).len(), 1);
    }

    #[test]
    fn violations_count_unexcepted_findings_on_the_affected_resources() {
        let limits = gate("prod", "    violations: {deny: 0, warn: 0}\n");
        let policy = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: short}\nspec:\n  module: p.rego\n  rule: data.t.warn\n  appliesTo: {kinds: [Certificate]}\n  enforcement: warn\n";
        let rego = "package t\nimport rego.v1\nwarn contains \"two names\" if count(input.resource.spec.dnsNames) > 1\n";
        let (api, api2) = (
            cert("api", "prod", "api.example.com"),
            cert("api", "prod", "a.example.com, b.example.com"),
        );
        let web = cert("web", "staging", "a.example.org, b.example.org");
        let base = [
            ("i.yaml", ISSUERS),
            ("api.yaml", api.as_str()),
            ("web.yaml", web.as_str()),
            ("g.yaml", limits.as_str()),
            ("p.yaml", policy),
            ("p.rego", rego),
        ];
        let head = [
            ("i.yaml", ISSUERS),
            ("api.yaml", api2.as_str()),
            ("web.yaml", web.as_str()),
            ("g.yaml", limits.as_str()),
            ("p.yaml", policy),
            ("p.rego", rego),
        ];
        let decision = decided(&base, &head, true, &evidence(vec![], vec![]), at(10));
        assert_eq!(decision.verdict, Verdict::Blocked);
        assert_eq!(
            decision.gates[0].requirements[0].summary,
            "1 warn findings (at most 0)"
        );
    }

    #[test]
    fn a_changed_rego_module_is_a_change_to_the_policies_that_use_it() {
        let policies = "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: rules}\nspec:\n  appliesTo: {kinds: [Policy]}\n  require:\n    approvals: {count: 1}\n";
        let policy = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: short}\nspec:\n  module: p.rego\n  rule: data.t.deny\n  appliesTo: {kinds: [Certificate]}\n";
        let strict = "package t\nimport rego.v1\ndeny contains \"no\" if false\n";
        let lax = "package t\nimport rego.v1\ndeny contains \"no\" if input.never\n";
        let base = [
            ("i.yaml", ISSUERS),
            ("g.yaml", policies),
            ("p.yaml", policy),
            ("p.rego", strict),
        ];
        let head = [
            ("i.yaml", ISSUERS),
            ("g.yaml", policies),
            ("p.yaml", policy),
            ("p.rego", lax),
        ];
        let decision = decided(&base, &head, true, &evidence(vec![], vec![]), at(10));
        assert_eq!(decision.verdict, Verdict::Blocked);
        assert_eq!(decision.gates[0].affected, ["Policy/short"]);
    }

    #[test]
    fn closed_windows_hold_renewals_back_until_expiry_is_within_the_margin() {
        let follow = gate(
            "prod",
            "    window: {timezone: UTC, allow: [{from: '09:00', to: '16:00'}]}\n    renewals: followWindow\n    expiryMargin: 3d\n",
        );
        let (api, web) = (
            cert("api", "prod", "api.example.com"),
            cert("web", "staging", "web.example.com"),
        );
        let base = catalog(&[
            ("i.yaml", ISSUERS),
            ("g.yaml", follow.as_str()),
            ("api.yaml", api.as_str()),
            ("web.yaml", web.as_str()),
        ]);
        let holds = gate::renewal_holds(&base, at(18));
        assert_eq!(holds.len(), 1);
        assert!(gate::renewal_holds(&base, at(10)).is_empty());
        let labels = |name: &str| {
            base.get(Kind::Certificate, name)
                .map(|l| l.resource.metadata.labels.clone())
                .expect("a certificate")
        };
        let (prod, staging) = (labels("api"), labels("web"));
        let far = at(18) + chrono::Duration::days(20);
        let near = at(18) + chrono::Duration::days(2);
        assert!(matches!(
            gate::renewal(&holds, Kind::Certificate, &prod, far, at(18)),
            gate::Renewal::Held(_)
        ));
        assert!(matches!(
            gate::renewal(&holds, Kind::Certificate, &prod, near, at(18)),
            gate::Renewal::Forced(_)
        ));
        assert_eq!(
            gate::renewal(&holds, Kind::Certificate, &staging, far, at(18)),
            gate::Renewal::Go
        );
    }
}
