//! Change windows: when a gate lets changes through, in the gate's time zone.

use chrono::{DateTime, Utc};

use crate::model::ChangeWindow;

/// Whether a window lets changes through at an instant, and when that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    pub open: bool,
    pub reason: Option<String>,
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
}

pub fn state(_window: &ChangeWindow, _now: DateTime<Utc>) -> WindowState {
    WindowState {
        open: true,
        reason: None,
        opens_at: None,
        closes_at: None,
    }
}

pub fn local(at: DateTime<Utc>, timezone: &str) -> String {
    format!("{at} {timezone}")
}
