//! Renewals and change windows: renewals are not changes and go on during freezes, unless a
//! gate says `renewals: followWindow`; even then expiry within the gate's margin beats the
//! freeze.

use chrono::{DateTime, Utc};

use super::window;
use crate::model::{AppliesTo, Catalog, Kind, Labels, RenewalRule, Spec};

/// A gate whose window holds renewals back (`renewals: followWindow`, window closed).
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalHold {
    pub gate: String,
    pub applies_to: AppliesTo,
    /// Renewals within this margin of expiry go ahead anyway: expiry beats freeze.
    pub margin: chrono::Duration,
    /// When the window opens, if it does.
    pub opens_at: Option<DateTime<Utc>>,
}

/// The renewal holds of the gates of `catalog` at `now`.
pub fn renewal_holds(catalog: &Catalog, now: DateTime<Utc>) -> Vec<RenewalHold> {
    catalog
        .of_kind(Kind::Gate)
        .filter_map(|l| match &l.resource.spec {
            Spec::Gate(spec) if spec.require.renewals == RenewalRule::FollowWindow => {
                let window = spec.require.window.as_ref()?;
                let state = window::state(window, now);
                (!state.open).then(|| RenewalHold {
                    gate: l.name().to_owned(),
                    applies_to: spec.applies_to.clone(),
                    margin: chrono::Duration::seconds(
                        i64::try_from(spec.require.expiry_margin.as_secs())
                            .unwrap_or(i64::MAX / 1000),
                    ),
                    opens_at: state.opens_at,
                })
            }
            _ => None,
        })
        .collect()
}

/// What the gates say of a renewal that is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Renewal<'a> {
    /// No gate holds it.
    Go,
    /// A closed window holds it back.
    Held(&'a RenewalHold),
    /// A closed window would hold it, but expiry is within the gate's margin: expiry beats
    /// freeze.
    Forced(&'a RenewalHold),
}

/// Whether a due renewal of a resource goes ahead at `now`.
pub fn renewal<'a>(
    holds: &'a [RenewalHold],
    kind: Kind,
    labels: &Labels,
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Renewal<'a> {
    let mut matching = holds.iter().filter(|h| h.applies_to.matches(kind, labels));
    let Some(first) = matching.next() else {
        return Renewal::Go;
    };
    match std::iter::once(first)
        .chain(matching)
        .find(|h| not_after - now > h.margin)
    {
        Some(hold) => Renewal::Held(hold),
        None => Renewal::Forced(first),
    }
}
