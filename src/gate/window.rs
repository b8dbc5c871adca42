//! Change windows: when a gate lets changes through, in the gate's time zone.
//!
//! A window is open at an instant when, on the gate's wall clock, the date is in no freeze and
//! the weekday and time fall in an allowed slot (any time when no slot is listed). The slots are
//! folded into the stretches of one week they allow; the next opening or closing is found by
//! walking forward over the instants where that can change: slot edges, freeze edges and the
//! time zone's offset changes. The walk costs a few time-zone lookups per such instant, whatever
//! the distance, so a gate's state is cheap enough to take on every reconcile.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::diag::{MAX_MESSAGE_CHARS, bounded};
use crate::model::semantic::date;
use crate::model::{AllowSlot, ChangeWindow, Freeze, Weekday};

/// Whether a window lets changes through at an instant, and when that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    pub open: bool,
    /// Why it is closed, in plain words, e.g. "outside the allowed times (Mon, Tue, Wed, Thu
    /// 09:00–16:00 Europe/Berlin)" or "year-end freeze (2026-12-20 to 2027-01-04)".
    pub reason: Option<String>,
    /// When closed: the next instant it opens; None when it does not open within the horizon.
    pub opens_at: Option<DateTime<Utc>>,
    /// When open: the next instant it closes; None when it never closes within the horizon.
    pub closes_at: Option<DateTime<Utc>>,
}

/// Whether `window` is open at `now`, why not, and when that changes.
///
/// A window that cannot be read (the repository's validation refuses such windows, but a
/// gate in force may predate a rule) is closed, and says why.
pub fn state(window: &ChangeWindow, now: DateTime<Utc>) -> WindowState {
    match Schedule::new(window) {
        Ok(schedule) => schedule.state(now),
        Err(problem) => WindowState {
            open: false,
            reason: Some(bounded(
                format!("the change window cannot be read, so it stays closed: {problem}"),
                MAX_MESSAGE_CHARS,
            )),
            opens_at: None,
            closes_at: None,
        },
    }
}

/// An instant as the gate's time zone shows it, for reports: "Mon 2026-11-30 09:00 CET".
/// In UTC when the time zone is unknown.
pub fn local(at: DateTime<Utc>, timezone: &str) -> String {
    const FORMAT: &str = "%a %Y-%m-%d %H:%M %Z";
    match Tz::from_str(timezone) {
        Ok(tz) => at.with_timezone(&tz).format(FORMAT).to_string(),
        Err(_) => at.format(FORMAT).to_string(),
    }
}

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// How far ahead the next opening or closing is looked for: about three years.
const HORIZON: i64 = 1096 * DAY;
/// The longest stretch of the walk between two looks at the offset. No time zone changes its
/// offset twice within a week, so an offset found changed between two looks changed once.
const LONGEST_STEP: i64 = WEEK;
/// 1969-12-29 00:00, a Monday: wall-clock seconds since then, modulo a week, are seconds into
/// the week.
const MONDAY_BEFORE_EPOCH: i64 = -3 * DAY;

/// A range of seconds or days, `start` included, `end` not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    start: i64,
    end: i64,
}

impl Span {
    fn contains(self, point: i64) -> bool {
        self.start <= point && point < self.end
    }
}

/// A window read into numbers. Instants are seconds since the epoch; "wall" times are the
/// gate's wall clock read as if it were UTC, so a wall day is `wall.div_euclid(DAY)`.
struct Schedule<'a> {
    window: &'a ChangeWindow,
    tz: Tz,
    /// The spans of the week that slots allow, in seconds into the week: merged. `None`: no
    /// slots are listed, any time is allowed.
    allowed: Option<Vec<Span>>,
    /// Seconds into the week at which being allowed starts or stops, sorted.
    edges: Vec<i64>,
    /// The days of each freeze, in the order of `window.deny`.
    freezes: Vec<Span>,
    /// The freezes merged, so the day each ends is not frozen.
    frozen: Vec<Span>,
}

impl<'a> Schedule<'a> {
    fn new(window: &'a ChangeWindow) -> Result<Schedule<'a>, String> {
        let tz = Tz::from_str(&window.timezone)
            .map_err(|_| format!("unknown time zone `{}`", window.timezone))?;
        let allowed = if window.allow.is_empty() {
            None
        } else {
            Some(merged(week_spans(&window.allow)?))
        };
        let edges = allowed.as_deref().map(edges_of).unwrap_or_default();
        let freezes = window
            .deny
            .iter()
            .map(freeze_days)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Schedule {
            window,
            tz,
            allowed,
            edges,
            frozen: merged(freezes.clone()),
            freezes,
        })
    }

    fn state(&self, now: DateTime<Utc>) -> WindowState {
        let offset = self.offset_of(&now.naive_utc());
        let at = now.timestamp();
        let wall = at + offset;
        let open = self.open_at(wall);
        let change = self.next_change(at, offset, open);
        WindowState {
            open,
            reason: (!open).then(|| bounded(self.closed_reason(wall), MAX_MESSAGE_CHARS)),
            opens_at: change.filter(|_| !open),
            closes_at: change.filter(|_| open),
        }
    }

    /// The offset of the gate's wall clock from UTC at an instant, in seconds.
    fn offset_of(&self, instant: &NaiveDateTime) -> i64 {
        let offset = self.tz.offset_from_utc_datetime(instant);
        i64::from(offset.fix().local_minus_utc())
    }

    /// The offset at `at` seconds since the epoch; `None` past the instants there are.
    fn offset_at(&self, at: i64) -> Option<i64> {
        Some(self.offset_of(&DateTime::from_timestamp(at, 0)?.naive_utc()))
    }

    fn open_at(&self, wall: i64) -> bool {
        let allowed = match &self.allowed {
            Some(spans) => span_at(spans, second_of_week(wall)).is_some(),
            None => true,
        };
        allowed && span_at(&self.frozen, wall.div_euclid(DAY)).is_none()
    }

    /// The first instant after `from` (whose offset is `offset`) at which being open is no
    /// longer `open`, within the horizon.
    fn next_change(&self, from: i64, offset: i64, open: bool) -> Option<DateTime<Utc>> {
        let horizon = from + HORIZON;
        let (mut at, mut offset) = (from, offset);
        loop {
            let mut next = self.next_breakpoint(at + offset)? - offset;
            let mut next_offset = self.offset_at(next)?;
            if next_offset != offset {
                // The clock jumped on the way: the wall time reached is not the one aimed at,
                // and the jump itself may open or close the window (a slot starting in a
                // skipped hour opens when the hour is skipped; a repeated hour is in its slots
                // twice).
                next = self.offset_change(at, next, offset)?;
                next_offset = self.offset_at(next)?;
            }
            if next > horizon {
                return None;
            }
            if self.open_at(next + next_offset) != open {
                return DateTime::from_timestamp(next, 0);
            }
            (at, offset) = (next, next_offset);
        }
    }

    /// The next wall time after `wall` at which being open may change, or `None` when it
    /// never changes again.
    fn next_breakpoint(&self, wall: i64) -> Option<i64> {
        let day = wall.div_euclid(DAY);
        let next = match span_at(&self.frozen, day) {
            // Nothing opens before the freeze is over.
            Some(freeze) => Some(freeze.end * DAY),
            None => {
                let freeze = self
                    .frozen
                    .get(self.frozen.partition_point(|freeze| freeze.start <= day))
                    .map(|freeze| freeze.start * DAY);
                freeze.into_iter().chain(self.next_edge(wall)).min()
            }
        };
        next.map(|next| next.min(wall + LONGEST_STEP))
    }

    /// The next wall time after `wall` at which a slot starts or ends.
    fn next_edge(&self, wall: i64) -> Option<i64> {
        let second = second_of_week(wall);
        let edge = match self.edges.get(self.edges.partition_point(|&e| e <= second)) {
            Some(&edge) => edge,
            None => self.edges.first()? + WEEK,
        };
        Some(wall + edge - second)
    }

    /// The instant the offset changes, between `before` (which has `offset`) and `after`
    /// (which has another), found by halving: offsets change on whole seconds.
    fn offset_change(&self, mut before: i64, mut after: i64, offset: i64) -> Option<i64> {
        while after - before > 1 {
            let middle = before + (after - before) / 2;
            if self.offset_at(middle)? == offset {
                before = middle;
            } else {
                after = middle;
            }
        }
        Some(after)
    }

    fn closed_reason(&self, wall: i64) -> String {
        let day = wall.div_euclid(DAY);
        let mut freezes = self.window.deny.iter().zip(&self.freezes);
        if let Some((freeze, _)) = freezes.find(|(_, days)| days.contains(day)) {
            let why = freeze.reason.as_deref().unwrap_or("change freeze");
            return format!("{why} ({} to {})", freeze.from, freeze.to);
        }
        let slots: Vec<String> = self.window.allow.iter().map(describe_slot).collect();
        format!(
            "outside the allowed times ({} {})",
            slots.join("; "),
            self.window.timezone
        )
    }
}

fn second_of_week(wall: i64) -> i64 {
    (wall - MONDAY_BEFORE_EPOCH).rem_euclid(WEEK)
}

/// The span of sorted, disjoint `spans` that contains `point`.
fn span_at(spans: &[Span], point: i64) -> Option<Span> {
    let after = spans.partition_point(|span| span.start <= point);
    let span = *spans.get(after.checked_sub(1)?)?;
    span.contains(point).then_some(span)
}

/// Spans merged where they overlap or touch, sorted.
fn merged(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable();
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// "Mon, Tue 09:00–16:00", or "every day 22:00–02:00".
fn describe_slot(slot: &AllowSlot) -> String {
    let days = if slot.days.is_empty() {
        "every day".to_owned()
    } else {
        let names: Vec<&str> = slot.days.iter().map(|day| day.as_str()).collect();
        names.join(", ")
    };
    format!("{days} {}–{}", slot.from, slot.to)
}

/// The spans of the week the slots allow, in seconds into the week.
fn week_spans(slots: &[AllowSlot]) -> Result<Vec<Span>, String> {
    let mut spans = Vec::new();
    for slot in slots {
        let (from, to) = (time_of_day(&slot.from)?, time_of_day(&slot.to)?);
        // `to` before `from`: the slot runs past midnight into the next day.
        let length = if from <= to {
            to - from
        } else {
            DAY - from + to
        };
        if length == 0 {
            continue;
        }
        let days: Vec<i64> = if slot.days.is_empty() {
            (0..7).collect()
        } else {
            slot.days.iter().copied().map(day_of_week).collect()
        };
        for day in days {
            let start = (day * DAY + from) % WEEK;
            let end = start + length;
            spans.push(Span {
                start,
                end: end.min(WEEK),
            });
            // Late on Sunday, a slot runs on into Monday: the start of the week.
            if end > WEEK {
                spans.push(Span {
                    start: 0,
                    end: end - WEEK,
                });
            }
        }
    }
    Ok(spans)
}

/// Where being allowed changes. Merged spans neither overlap nor touch, so each start and end
/// is one, except where the week's last span goes on into its first.
fn edges_of(spans: &[Span]) -> Vec<i64> {
    let goes_round = spans.first().is_some_and(|first| first.start == 0)
        && spans.last().is_some_and(|last| last.end == WEEK);
    let mut edges: Vec<i64> = spans
        .iter()
        .flat_map(|span| [span.start, span.end % WEEK])
        .filter(|&edge| !(goes_round && edge == 0))
        .collect();
    edges.sort_unstable();
    edges.dedup();
    edges
}

fn day_of_week(day: Weekday) -> i64 {
    match day {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

/// Seconds since midnight of `HH:MM`, from `00:00` to `24:00`.
fn time_of_day(text: &str) -> Result<i64, String> {
    let refused = || format!("`{text}` is not a time of day (HH:MM, 00:00 to 24:00)");
    let &[h1, h2, b':', m1, m2] = text.as_bytes() else {
        return Err(refused());
    };
    let digits = [h1, h2, m1, m2];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(refused());
    }
    let [h1, h2, m1, m2] = digits.map(|digit| i64::from(digit - b'0'));
    let (hours, minutes) = (h1 * 10 + h2, m1 * 10 + m2);
    if (hours < 24 && minutes < 60) || (hours, minutes) == (24, 0) {
        Ok((hours * 60 + minutes) * 60)
    } else {
        Err(refused())
    }
}

/// The days a freeze covers, since the epoch.
fn freeze_days(freeze: &Freeze) -> Result<Span, String> {
    let day = |text: &str| {
        date(text)
            .map(|date| i64::from(date.to_epoch_days()))
            .ok_or_else(|| format!("`{text}` is not a date (YYYY-MM-DD)"))
    };
    let (first, last) = (day(&freeze.from)?, day(&freeze.to)?);
    if first > last {
        return Err(format!(
            "the freeze from {} to {} ends before it starts",
            freeze.from, freeze.to
        ));
    }
    Ok(Span {
        start: first,
        end: last + 1,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, NaiveDate, Timelike};

    use super::*;
    use crate::model::Weekday::{Fri, Mon, Sat, Sun, Thu, Tue, Wed};

    fn slot(days: &[Weekday], from: &str, to: &str) -> AllowSlot {
        AllowSlot {
            days: days.to_vec(),
            from: from.to_owned(),
            to: to.to_owned(),
        }
    }

    fn freeze(from: &str, to: &str, reason: Option<&str>) -> Freeze {
        Freeze {
            from: from.to_owned(),
            to: to.to_owned(),
            reason: reason.map(str::to_owned),
        }
    }

    fn berlin(allow: Vec<AllowSlot>, deny: Vec<Freeze>) -> ChangeWindow {
        ChangeWindow {
            timezone: "Europe/Berlin".to_owned(),
            allow,
            deny,
        }
    }

    /// The window of the documented example.
    fn office_hours() -> ChangeWindow {
        berlin(
            vec![slot(&[Mon, Tue, Wed, Thu], "09:00", "16:00")],
            vec![freeze("2026-12-20", "2027-01-04", Some("year-end freeze"))],
        )
    }

    /// An instant written with its offset, as the wall clock shows it.
    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn closed_until(opens_at: &str, reason: &str) -> WindowState {
        WindowState {
            open: false,
            reason: Some(reason.to_owned()),
            opens_at: Some(at(opens_at)),
            closes_at: None,
        }
    }

    fn open_until(closes_at: Option<&str>) -> WindowState {
        WindowState {
            open: true,
            reason: None,
            opens_at: None,
            closes_at: closes_at.map(at),
        }
    }

    const OUTSIDE_OFFICE_HOURS: &str =
        "outside the allowed times (Mon, Tue, Wed, Thu 09:00–16:00 Europe/Berlin)";

    #[test]
    fn a_window_opens_at_the_start_of_a_slot_and_closes_at_its_end() {
        let window = office_hours();
        let opening = "2026-11-30T09:00:00+01:00";
        let closing = "2026-11-30T16:00:00+01:00";
        assert_eq!(
            state(&window, at("2026-11-30T08:59:59+01:00")),
            closed_until(opening, OUTSIDE_OFFICE_HOURS)
        );
        assert_eq!(state(&window, at(opening)), open_until(Some(closing)));
        assert_eq!(
            state(&window, at("2026-11-30T15:59:59.999+01:00")),
            open_until(Some(closing))
        );
        assert_eq!(
            state(&window, at(closing)),
            closed_until("2026-12-01T09:00:00+01:00", OUTSIDE_OFFICE_HOURS)
        );
        // From Thursday afternoon, the next slot is on Monday.
        assert_eq!(
            state(&window, at("2026-12-03T17:00:00+01:00")).opens_at,
            Some(at("2026-12-07T09:00:00+01:00"))
        );
    }

    #[test]
    fn a_freeze_beats_the_allowed_times_and_the_first_slot_after_it_opens() {
        let window = office_hours();
        // Monday 2026-12-21 10:00 is in a slot, but frozen; 2027-01-04 is a Monday, frozen too.
        assert_eq!(
            state(&window, at("2026-12-21T10:00:00+01:00")),
            closed_until(
                "2027-01-05T09:00:00+01:00",
                "year-end freeze (2026-12-20 to 2027-01-04)"
            )
        );
        let all_day = berlin(
            vec![slot(&[], "00:00", "24:00")],
            vec![freeze("2026-12-20", "2027-01-04", None)],
        );
        assert_eq!(
            state(&all_day, at("2026-12-01T12:00:00+01:00")),
            open_until(Some("2026-12-20T00:00:00+01:00"))
        );
        assert_eq!(
            state(&all_day, at("2026-12-20T00:00:00+01:00"))
                .reason
                .as_deref(),
            Some("change freeze (2026-12-20 to 2027-01-04)")
        );
    }

    #[test]
    fn without_slots_a_window_is_open_except_in_freezes_and_opens_at_midnight_after_one() {
        let always = berlin(vec![], vec![]);
        assert_eq!(
            state(&always, at("2026-06-01T12:00:00+02:00")),
            open_until(None)
        );
        let frozen = berlin(
            vec![],
            vec![
                freeze("2026-12-20", "2026-12-31", Some("year-end freeze")),
                // Overlapping and adjacent freezes make one.
                freeze("2026-12-24", "2027-01-02", Some("holidays")),
                freeze("2027-01-03", "2027-01-04", Some("inventory")),
            ],
        );
        assert_eq!(
            state(&frozen, at("2026-12-01T12:00:00+01:00")),
            open_until(Some("2026-12-20T00:00:00+01:00"))
        );
        assert_eq!(
            state(&frozen, at("2026-12-25T12:00:00+01:00")),
            closed_until(
                "2027-01-05T00:00:00+01:00",
                "year-end freeze (2026-12-20 to 2026-12-31)"
            )
        );
        assert_eq!(
            state(&frozen, at("2027-01-05T00:00:00+01:00")),
            open_until(None)
        );
    }

    #[test]
    fn a_slot_past_midnight_covers_the_early_hours_of_the_next_day() {
        let window = berlin(vec![slot(&[Fri], "22:00", "02:00")], vec![]);
        let reason = "outside the allowed times (Fri 22:00–02:00 Europe/Berlin)";
        assert_eq!(
            state(&window, at("2026-11-27T21:59:59+01:00")),
            closed_until("2026-11-27T22:00:00+01:00", reason)
        );
        assert_eq!(
            state(&window, at("2026-11-28T01:00:00+01:00")),
            open_until(Some("2026-11-28T02:00:00+01:00"))
        );
        // Saturday is not a day of the slot: Saturday night is closed.
        assert_eq!(
            state(&window, at("2026-11-28T23:00:00+01:00")),
            closed_until("2026-12-04T22:00:00+01:00", reason)
        );
        assert!(!state(&window, at("2026-11-29T01:00:00+01:00")).open);

        // Late on Sunday, a slot runs into Monday, across the end of the week.
        let sunday_night = berlin(vec![slot(&[Sun], "23:00", "01:00")], vec![]);
        assert_eq!(
            state(&sunday_night, at("2026-11-30T00:30:00+01:00")),
            open_until(Some("2026-11-30T01:00:00+01:00"))
        );
    }

    #[test]
    fn twenty_four_hundred_is_the_end_of_the_day() {
        let evening = berlin(vec![slot(&[Mon], "22:00", "24:00")], vec![]);
        assert_eq!(
            state(&evening, at("2026-11-30T23:59:59+01:00")),
            open_until(Some("2026-12-01T00:00:00+01:00"))
        );
        assert!(!state(&evening, at("2026-12-01T00:00:00+01:00")).open);
        // From 24:00 to 02:00 on Monday is the first two hours of Tuesday.
        let night = berlin(vec![slot(&[Mon], "24:00", "02:00")], vec![]);
        assert_eq!(
            state(&night, at("2026-11-30T23:00:00+01:00")).opens_at,
            Some(at("2026-12-01T00:00:00+01:00"))
        );
        // Slots that together cover the whole week never close.
        let whole_week = berlin(
            vec![
                slot(&[Mon, Tue, Wed], "00:00", "24:00"),
                slot(&[Wed, Thu, Fri, Sat], "12:00", "12:00"),
                slot(&[Thu, Fri, Sat, Sun], "00:00", "24:00"),
            ],
            vec![],
        );
        assert_eq!(
            state(&whole_week, at("2026-11-30T12:00:00+01:00")),
            open_until(None)
        );
    }

    #[test]
    fn a_slot_starting_in_the_hour_skipped_in_spring_opens_when_the_clock_jumps() {
        // On 2026-03-29 Berlin's clocks go from 02:00 CET straight to 03:00 CEST.
        let window = berlin(vec![slot(&[Sun], "02:30", "04:00")], vec![]);
        assert_eq!(
            state(&window, at("2026-03-29T01:30:00+01:00")).opens_at,
            Some(at("2026-03-29T03:00:00+02:00"))
        );
        assert!(!state(&window, at("2026-03-29T01:59:59+01:00")).open);
        assert_eq!(
            state(&window, at("2026-03-29T03:00:00+02:00")),
            open_until(Some("2026-03-29T04:00:00+02:00"))
        );
        // A slot ending in the skipped hour closes when the clock jumps.
        let ending = berlin(vec![slot(&[Sun], "01:00", "02:30")], vec![]);
        assert_eq!(
            state(&ending, at("2026-03-29T01:30:00+01:00")),
            open_until(Some("2026-03-29T03:00:00+02:00"))
        );
        // From before the change, the opening is found across it.
        assert_eq!(
            state(&window, at("2026-03-25T12:00:00+01:00")).opens_at,
            Some(at("2026-03-29T03:00:00+02:00"))
        );
        let sunday = berlin(vec![slot(&[Sun], "00:00", "24:00")], vec![]);
        assert_eq!(
            state(&sunday, at("2026-03-29T01:00:00+01:00")),
            open_until(Some("2026-03-30T00:00:00+02:00"))
        );
    }

    #[test]
    fn the_hour_repeated_in_autumn_is_in_its_slots_both_times() {
        // On 2026-10-25 Berlin's clocks go from 03:00 CEST back to 02:00 CET.
        let window = berlin(vec![slot(&[Sun], "02:00", "02:30")], vec![]);
        let next_week = "2026-11-01T02:00:00+01:00";
        let reason = "outside the allowed times (Sun 02:00–02:30 Europe/Berlin)";
        assert_eq!(
            state(&window, at("2026-10-25T01:59:59+02:00")),
            closed_until("2026-10-25T02:00:00+02:00", reason)
        );
        assert_eq!(
            state(&window, at("2026-10-25T02:00:00+02:00")),
            open_until(Some("2026-10-25T02:30:00+02:00"))
        );
        assert_eq!(
            state(&window, at("2026-10-25T02:30:00+02:00")),
            closed_until("2026-10-25T02:00:00+01:00", reason)
        );
        assert_eq!(
            state(&window, at("2026-10-25T02:00:00+01:00")),
            open_until(Some("2026-10-25T02:30:00+01:00"))
        );
        assert_eq!(
            state(&window, at("2026-10-25T02:30:00+01:00")),
            closed_until(next_week, reason)
        );
        // From before the change, the opening is found across it.
        let morning = berlin(vec![slot(&[Sun], "09:00", "10:00")], vec![]);
        assert_eq!(
            state(&morning, at("2026-10-24T12:00:00+02:00")).opens_at,
            Some(at("2026-10-25T09:00:00+01:00"))
        );
        // When the clock goes back from 03:00 to 02:00, a slot from 02:30 closes and opens
        // again at the second 02:30.
        let later = berlin(vec![slot(&[Sun], "02:30", "04:00")], vec![]);
        assert_eq!(
            state(&later, at("2026-10-25T02:45:00+02:00")),
            open_until(Some("2026-10-25T02:00:00+01:00"))
        );
        assert_eq!(
            state(&later, at("2026-10-25T02:00:00+01:00")).opens_at,
            Some(at("2026-10-25T02:30:00+01:00"))
        );
        assert_eq!(
            state(&later, at("2026-10-25T02:30:00+01:00")),
            open_until(Some("2026-10-25T04:00:00+01:00"))
        );
    }

    #[test]
    fn a_window_that_does_not_change_within_the_horizon_says_so() {
        let decade = berlin(
            vec![slot(&[Mon], "09:00", "16:00")],
            vec![freeze("2026-01-01", "2035-12-31", Some("moratorium"))],
        );
        assert_eq!(
            state(&decade, at("2026-06-01T10:00:00+02:00")),
            WindowState {
                open: false,
                reason: Some("moratorium (2026-01-01 to 2035-12-31)".to_owned()),
                opens_at: None,
                closes_at: None,
            }
        );
        // A freeze that ends within the horizon is seen.
        let two_years = berlin(vec![], vec![freeze("2026-01-01", "2027-12-31", None)]);
        assert_eq!(
            state(&two_years, at("2026-06-01T10:00:00+02:00")).opens_at,
            Some(at("2028-01-01T00:00:00+01:00"))
        );
        // Slots that allow no time at all never open.
        let empty = berlin(vec![slot(&[Mon], "10:00", "10:00")], vec![]);
        assert_eq!(
            state(&empty, at("2026-06-01T10:00:00+02:00")).opens_at,
            None
        );
    }

    #[test]
    fn a_window_that_cannot_be_read_stays_closed_and_says_why() {
        let unreadable = |window: ChangeWindow| {
            let state = state(&window, at("2026-06-01T10:00:00+02:00"));
            assert!(!state.open && state.opens_at.is_none() && state.closes_at.is_none());
            state.reason.unwrap()
        };
        let mut window = office_hours();
        window.timezone = "Europe/Berln".to_owned();
        assert_eq!(
            unreadable(window),
            "the change window cannot be read, so it stays closed: unknown time zone `Europe/Berln`"
        );
        for time in [
            "25:00", "24:01", "9:00", "09:60", "ab:cd", "", "09:000", "０9:00", "+9:00",
        ] {
            let window = berlin(vec![slot(&[], time, "10:00")], vec![]);
            assert!(
                unreadable(window).ends_with(&format!(
                    "`{time}` is not a time of day (HH:MM, 00:00 to 24:00)"
                )),
                "{time}"
            );
        }
        let window = berlin(vec![], vec![freeze("2026-02-30", "2026-03-01", None)]);
        assert!(unreadable(window).ends_with("`2026-02-30` is not a date (YYYY-MM-DD)"));
        let window = berlin(vec![], vec![freeze("2026-03-02", "2026-03-01", None)]);
        assert!(
            unreadable(window)
                .ends_with("the freeze from 2026-03-02 to 2026-03-01 ends before it starts")
        );
    }

    #[test]
    fn the_first_and_last_instants_there_are_do_not_break_it() {
        let office = office_hours();
        let first = state(&office, DateTime::<Utc>::MIN_UTC);
        assert!(!first.open);
        assert!(state(&office, first.opens_at.unwrap()).open);
        // After the last instant there is, nothing opens.
        assert_eq!(state(&office, DateTime::<Utc>::MAX_UTC).opens_at, None);
        assert_eq!(
            state(&berlin(vec![], vec![]), DateTime::<Utc>::MAX_UTC),
            open_until(None)
        );
        assert_eq!(
            local(DateTime::<Utc>::MAX_UTC, "Europe/Berlin"),
            "Tue +262143-01-01 00:59 CET"
        );
    }

    #[test]
    fn reasons_quoting_the_repository_are_bounded() {
        let reason = "x".repeat(5000);
        let window = berlin(
            vec![],
            vec![freeze("2026-01-01", "2026-12-31", Some(&reason))],
        );
        let shown = state(&window, at("2026-06-01T10:00:00+02:00"))
            .reason
            .unwrap();
        assert!(shown.chars().count() < 1100 && shown.ends_with("more characters)"));
    }

    #[test]
    fn instants_are_shown_on_the_gates_clock() {
        assert_eq!(
            local(at("2026-11-30T08:00:00Z"), "Europe/Berlin"),
            "Mon 2026-11-30 09:00 CET"
        );
        assert_eq!(
            local(at("2026-06-01T08:00:00Z"), "Europe/Berlin"),
            "Mon 2026-06-01 10:00 CEST"
        );
        assert_eq!(
            local(at("2026-11-30T08:00:00Z"), "Mars/Olympus"),
            "Mon 2026-11-30 08:00 UTC"
        );
    }

    /// Whether a window is open, as the rules say it, instant by instant: the answer the
    /// search must agree with.
    fn open_by_the_rules(window: &ChangeWindow, instant: DateTime<Utc>) -> bool {
        let tz: Tz = window.timezone.parse().unwrap();
        let wall = instant.with_timezone(&tz);
        let today = wall.date_naive();
        let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
        if window
            .deny
            .iter()
            .any(|f| day(&f.from) <= today && today <= day(&f.to))
        {
            return false;
        }
        let minutes = |text: &str| {
            let (h, m) = text.split_once(':').unwrap();
            h.parse::<u32>().unwrap() * 60 + m.parse::<u32>().unwrap()
        };
        let now = wall.hour() * 60 + wall.minute();
        let weekday = wall.weekday();
        let in_slot = |slot: &AllowSlot| {
            let on = |weekday: chrono::Weekday| {
                slot.days.is_empty() || slot.days.iter().any(|&d| d.as_str() == weekday.to_string())
            };
            let (from, to) = (minutes(&slot.from), minutes(&slot.to));
            if from < to {
                on(weekday) && from <= now && now < to
            } else if to < from {
                (on(weekday) && now >= from) || (on(weekday.pred()) && now < to)
            } else {
                false
            }
        };
        window.allow.is_empty() || window.allow.iter().any(in_slot)
    }

    /// A small deterministic generator (xorshift64*), so failures repeat.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: i64) -> i64 {
            (self.next() % bound.unsigned_abs()) as i64
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as i64) as usize]
        }
    }

    /// Zones whose clocks change by an hour at night, by half an hour, at midnight, never.
    const ZONES: [&str; 6] = [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Asia/Kolkata",
        "UTC",
    ];

    fn random_window(random: &mut Random) -> ChangeWindow {
        let times = [
            "00:00", "00:30", "01:00", "02:00", "02:15", "02:30", "03:00", "09:00", "16:00",
            "22:00", "23:30", "24:00",
        ];
        let allow = (0..random.below(4))
            .map(|_| {
                let days = Weekday::ALL
                    .iter()
                    .copied()
                    .filter(|_| random.below(3) == 0)
                    .collect::<Vec<_>>();
                slot(&days, random.pick(&times), random.pick(&times))
            })
            .collect();
        let deny = (0..random.below(3))
            .map(|_| {
                let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
                    + chrono::Days::new(random.below(3 * 365) as u64);
                let last = first + chrono::Days::new(random.below(20) as u64);
                freeze(&first.to_string(), &last.to_string(), None)
            })
            .collect();
        ChangeWindow {
            timezone: random.pick(&ZONES).to_owned(),
            allow,
            deny,
        }
    }

    /// Checks that the instant given as the next change is one, and that nothing changes
    /// before it (at sampled instants).
    fn check_next_change(window: &ChangeWindow, now: DateTime<Utc>, random: &mut Random) {
        let found = state(window, now);
        let context = || format!("{window:?} at {now}: {found:?}");
        assert_eq!(found.open, open_by_the_rules(window, now), "{}", context());
        assert_eq!(found.reason.is_none(), found.open, "{}", context());
        let change = if found.open {
            found.closes_at
        } else {
            found.opens_at
        };
        assert!(
            found.opens_at.is_none() || found.closes_at.is_none(),
            "{}",
            context()
        );
        let until = match change {
            Some(change) => {
                assert!(change > now, "{}", context());
                let after = state(window, change);
                let before = state(window, change - chrono::Duration::seconds(1));
                assert_eq!(after.open, !found.open, "{}", context());
                assert_eq!(before.open, found.open, "{}", context());
                assert_eq!(
                    after.open,
                    open_by_the_rules(window, change),
                    "{}",
                    context()
                );
                change
            }
            None => now + chrono::Duration::seconds(HORIZON - DAY),
        };
        let span = (until - now).num_seconds();
        for _ in 0..12 {
            let between = now + chrono::Duration::seconds(random.below(span.max(1)));
            assert_eq!(
                open_by_the_rules(window, between),
                found.open,
                "{} at {between}",
                context()
            );
        }
    }

    /// About when a time zone's clocks change in the three years from `start`, to the hour.
    fn offset_changes(tz: Tz, start: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let offset = |instant: DateTime<Utc>| instant.with_timezone(&tz).offset().fix();
        (1..3 * 365 * 24)
            .map(|hour| start + chrono::Duration::hours(hour))
            .filter(|&instant| offset(instant) != offset(instant - chrono::Duration::hours(1)))
            .collect()
    }

    #[test]
    fn the_next_change_agrees_with_the_rules_at_random_instants() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let start = at("2026-01-01T00:00:00Z");
        let mut windows = vec![
            office_hours(),
            berlin(
                vec![
                    slot(&[Mon, Tue, Wed, Thu], "09:00", "16:00"),
                    slot(&[Fri], "22:00", "02:00"),
                    slot(&[Sat, Sun], "02:30", "03:00"),
                ],
                vec![
                    freeze("2026-03-27", "2026-03-28", Some("before the clocks change")),
                    freeze("2026-12-20", "2027-01-04", Some("year-end freeze")),
                ],
            ),
        ];
        windows.extend((0..300).map(|_| random_window(&mut random)));
        let clock_changes: Vec<(&str, Vec<DateTime<Utc>>)> = ZONES
            .iter()
            .map(|&zone| (zone, offset_changes(zone.parse().unwrap(), start)))
            .collect();
        for window in &windows {
            let (_, clock_changes) = clock_changes
                .iter()
                .find(|(zone, _)| *zone == window.timezone)
                .unwrap();
            // Half the time, start within a few hours of the clock changing.
            let mut now = if clock_changes.is_empty() || random.below(2) == 0 {
                start + chrono::Duration::seconds(random.below(3 * 365 * DAY))
            } else {
                random.pick(clock_changes)
                    + chrono::Duration::seconds(random.below(12 * 3600) - 6 * 3600)
            };
            // Follow the window from change to change, landing on and just after each.
            for _ in 0..8 {
                check_next_change(window, now, &mut random);
                let found = state(window, now);
                let Some(change) = found.opens_at.or(found.closes_at) else {
                    break;
                };
                now = change + chrono::Duration::seconds(random.below(3) * random.below(3600));
            }
        }
    }
}
