//! What a plan posts to its pull request — a commit status and one comment — decided from
//! the report alone, and the small executor that sends it.

use crate::reconcile::decide::Verdict;
use crate::report::{COMMENT_MARKER, Format, PlanReport};

use super::{Check, CheckState, CommentOutcome, Forge, ForgeError};

/// The status `plan` sets on a pull request's head.
pub const PLAN_CONTEXT: &str = "gitward/plan";
/// The status the daemon sets on a commit it applied (or did not).
pub const APPLY_CONTEXT: &str = "gitward/apply";
/// Longest status description every forge keeps whole (GitHub's limit).
pub const DESCRIPTION_CHARS: usize = 140;

/// What to post for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub check: Check,
    /// The Markdown report, starting with [`COMMENT_MARKER`], within the forge's limit.
    pub comment: String,
}

/// The status and comment for `report`: success when the change would apply (now or when
/// its window opens), failure when it is blocked or the head is invalid.
pub fn posting(report: &PlanReport, run_url: Option<&str>, comment_limit: usize) -> Posting {
    let (state, headline) = headline(report);
    Posting {
        check: Check {
            context: PLAN_CONTEXT.to_owned(),
            state,
            description: one_line(&headline, DESCRIPTION_CHARS),
            url: run_url.map(str::to_owned),
        },
        comment: fit(report.render(Format::Markdown), comment_limit),
    }
}

/// The state a plan's status takes and the line that says why.
pub fn headline(report: &PlanReport) -> (CheckState, String) {
    let s = &report.summary;
    let changes = format!(
        "{} to issue, {} to reissue, {} to remove",
        s.issue, s.reissue, s.remove
    );
    match report.verdict {
        Verdict::Apply => (CheckState::Success, format!("would apply: {changes}")),
        Verdict::Pending { .. } => (
            CheckState::Success,
            format!("would apply when the window opens: {changes}"),
        ),
        Verdict::Blocked => (
            CheckState::Failure,
            format!("blocked: {}", report.reasons.join("; ")),
        ),
        Verdict::Failed => (
            CheckState::Failure,
            format!(
                "invalid configuration: {} error(s)",
                report.errors().count()
            ),
        ),
    }
}

/// `text` on one line of printable characters, at most `limit` characters (an ellipsis
/// ends a shortened one).
pub fn one_line(text: &str, limit: usize) -> String {
    let flat: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if flat.chars().count() <= limit {
        return flat;
    }
    let mut short: String = flat.chars().take(limit.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// `body` within `limit` characters: cut at a line, with an open code fence closed and a
/// last line that says the rest is in the CI job's output.
pub fn fit(body: String, limit: usize) -> String {
    let total = body.chars().count();
    if total <= limit {
        return body;
    }
    let notice = format!(
        "\n\n**This report is longer than the forge shows ({total} characters); the whole report is in the CI job's output.**\n"
    );
    // Room for the notice and a closing fence.
    let room = limit.saturating_sub(notice.chars().count() + 16);
    let mut kept = String::new();
    let mut used = 0;
    let mut fence: Option<String> = None;
    for line in body.split_inclusive('\n') {
        let chars = line.chars().count();
        if used + chars > room {
            break;
        }
        used += chars;
        kept.push_str(line);
        let trimmed = line.trim_end();
        let marks: String = trimmed.chars().take_while(|c| *c == '`').collect();
        if marks.len() >= 3 {
            fence = match fence {
                Some(open) if trimmed == open => None,
                Some(open) => Some(open),
                None => Some(marks),
            };
        }
    }
    if let Some(open) = fence {
        if !kept.ends_with('\n') {
            kept.push('\n');
        }
        kept.push_str(&open);
    }
    kept.push_str(&notice);
    kept
}

/// Longest posting may take in all: each request has its timeout, and a forge answering
/// page after page just in time must not hold a CI job or the daemon's planner for long.
pub const POSTING_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// `work` within [`POSTING_DEADLINE`].
pub async fn within_deadline<T>(
    work: impl std::future::Future<Output = Result<T, ForgeError>>,
) -> Result<T, ForgeError> {
    tokio::time::timeout(POSTING_DEADLINE, work)
        .await
        .unwrap_or_else(|_| {
            Err(ForgeError::Unavailable(format!(
                "the forge did not finish answering within {} seconds",
                POSTING_DEADLINE.as_secs()
            )))
        })
}

/// What was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub comment: CommentOutcome,
}

/// Sets the status of `sha`, shows `report` beside the code where the forge can, then makes
/// pull request `number`'s plan comment say the plan. The status first: it is what branch
/// protection reads.
pub async fn post(
    forge: &dyn Forge,
    number: u64,
    sha: &str,
    posting: &Posting,
    report: &PlanReport,
) -> Result<Posted, ForgeError> {
    forge.set_check(sha, &posting.check).await?;
    forge
        .publish_insights(sha, report, posting.check.url.as_deref())
        .await?;
    let comment = forge
        .upsert_comment(number, COMMENT_MARKER, &posting.comment)
        .await?;
    Ok(Posted { comment })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_one_short_line() {
        assert_eq!(one_line("a\n\tb  c\u{1b}[31m", 140), "a b c[31m");
        let long = one_line(&"x".repeat(500), DESCRIPTION_CHARS);
        assert_eq!(long.chars().count(), DESCRIPTION_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_long_comment_is_cut_at_a_line_with_its_fence_closed() {
        let body = format!(
            "{COMMENT_MARKER}\nheading\n````\n{}````\nafter\n",
            "line of the report\n".repeat(1000)
        );
        let fitted = fit(body.clone(), 2000);
        assert!(fitted.chars().count() <= 2000, "{}", fitted.len());
        assert!(fitted.starts_with(COMMENT_MARKER));
        let before_notice = fitted.split("\n\n**This report").next().unwrap();
        assert!(before_notice.ends_with("\n````"), "{before_notice}");
        assert!(fitted.contains(&format!("({} characters)", body.chars().count())));
        assert_eq!(fit("short".to_owned(), 2000), "short");
    }
}
