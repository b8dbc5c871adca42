//! Gitea's API (and Forgejo's, which forked it): GitHub's REST dialect below `/api/v1`, so
//! this is the GitHub client with Gitea's [`Dialect`] — `Authorization: token …`, `limit`
//! for a page's size, Gitea Actions' own user — and Gitea's way of finding the pull
//! requests of a commit.

use reqwest::Method;

use super::api::{MAX_PAGES, Options, segment};
use super::github::{self, Dialect, GitHub, Pull, User};
use super::{
    Call, Check, CommentOutcome, Forge, ForgeError, ForgeKind, PullRequest, Review, Target,
};

/// Items per page: Gitea's default most (`MAX_RESPONSE_ITEMS`).
const PAGE_SIZE: &str = "50";

/// Gitea documents no limit on a comment's body; GitHub's keeps the one comment readable
/// and is far below what Gitea stores.
const COMMENT_CHARS: usize = 65_536;

/// The id Gitea gives the user Gitea Actions' token acts as (`gitea-actions`); no account
/// a person signs in with has a negative id.
const ACTIONS_USER_ID: i64 = -2;

const GITEA: Dialect = Dialect {
    kind: ForgeKind::Gitea,
    name: "Gitea",
    scheme: "token",
    headers: &[],
    page: ("limit", PAGE_SIZE),
    comment_chars: COMMENT_CHARS,
    ci_author: is_actions_user,
};

fn is_actions_user(user: &User) -> bool {
    user.id == ACTIONS_USER_ID
}

pub struct Gitea {
    github: GitHub,
}

impl Gitea {
    pub fn new(target: &Target, options: &Options) -> Result<Gitea, ForgeError> {
        Ok(Gitea {
            github: GitHub::with_dialect(target, options, &GITEA)?,
        })
    }

    /// The merged pull request whose merge commit `sha` is: Gitea finds only that one by
    /// commit (`GET /commits/{sha}/pull`, 404 when there is none).
    async fn merged_as(&self, sha: &str) -> Result<Option<Pull>, ForgeError> {
        let url = self
            .github
            .url(&format!("commits/{}/pull", segment(sha)), &[])?;
        match self
            .github
            .api()
            .json(
                Method::GET,
                url,
                None,
                "reading the merged pull request of a commit",
            )
            .await
        {
            Ok(pull) => Ok(Some(pull)),
            Err(ForgeError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Open pull requests whose head is `sha`, from the list of open ones, page by page
    /// until an empty page (Gitea's `Link` header is not relied upon).
    async fn open_with_head(&self, sha: &str) -> Result<Vec<Pull>, ForgeError> {
        let mut found = Vec::new();
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let url = self.github.url(
                "pulls",
                &[("state", "open"), ("limit", PAGE_SIZE), ("page", &page)],
            )?;
            let pulls: Vec<Pull> = self
                .github
                .api()
                .json(Method::GET, url, None, "reading the open pull requests")
                .await?;
            if pulls.is_empty() {
                return Ok(found);
            }
            found.extend(pulls.into_iter().filter(|p| p.head_sha() == sha));
        }
        Err(ForgeError::Unexpected(format!(
            "reading the open pull requests: Gitea has more than {MAX_PAGES} pages of them"
        )))
    }
}

impl Forge for Gitea {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Gitea
    }

    fn set_check<'a>(&'a self, sha: &'a str, check: &'a Check) -> Call<'a, ()> {
        self.github.set_check(sha, check)
    }

    fn upsert_comment<'a>(
        &'a self,
        number: u64,
        marker: &'a str,
        body: &'a str,
    ) -> Call<'a, CommentOutcome> {
        self.github.upsert_comment(number, marker, body)
    }

    /// The open pull requests `sha` heads and the merged one it is the merge commit of.
    fn pulls_for<'a>(&'a self, sha: &'a str) -> Call<'a, Vec<PullRequest>> {
        Box::pin(async move {
            let mut pulls = self.open_with_head(sha).await?;
            pulls.extend(self.merged_as(sha).await?);
            Ok(pulls.into_iter().map(github::pull_request).collect())
        })
    }

    /// Reviews as GitHub gives them; a dismissed approval does not approve.
    fn reviews<'a>(&'a self, pull: &'a PullRequest) -> Call<'a, Vec<Review>> {
        self.github.reviews(pull)
    }

    fn comment_limit(&self) -> usize {
        self.github.comment_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_actions_user_counts_as_the_ci_token() {
        let user = |id: i64| User {
            login: "gitea-actions".to_owned(),
            type_: String::new(),
            id,
        };
        assert!(is_actions_user(&user(-2)));
        // A person may call themselves anything; the id is what Gitea gives.
        assert!(!is_actions_user(&user(7)));
        assert!(!is_actions_user(&user(0)));
    }

    #[test]
    fn the_client_speaks_gitea() {
        let gitea = Gitea::new(
            &Target {
                kind: ForgeKind::Gitea,
                api: "https://git.example.com/api/v1".to_owned(),
                repository: "acme/pki".to_owned(),
                token: "t0ken".to_owned(),
            },
            &Options::default(),
        )
        .unwrap();
        assert_eq!(gitea.kind(), ForgeKind::Gitea);
        assert_eq!(gitea.comment_limit(), COMMENT_CHARS);
        assert_eq!(
            gitea.github.url("pulls", &[GITEA.page]).unwrap().as_str(),
            "https://git.example.com/api/v1/repos/acme/pki/pulls?limit=50"
        );
    }
}
