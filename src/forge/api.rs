//! The HTTP every forge client shares: one client with a timeout and no redirects, the
//! credential in one header, bounded answers, pagination that never leaves the API's origin,
//! and failures that never carry the token.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ForgeError;

/// Most bytes of one answer: a page of 100 comments of 65,536 characters each fits.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// Most pages one listing reads: a pull request with more comments than that is refused
/// rather than read for ever.
pub const MAX_PAGES: usize = 50;
/// Most items one listing holds, over all its pages: a page of tiny items costs far more
/// memory than its bytes.
pub const MAX_ITEMS: usize = 10_000;
/// Most characters of a forge's words kept in a message: messages go to notes and logs.
const MAX_QUOTED_CHARS: usize = 300;

/// A list in a forge's answer, refused past [`MAX_ITEMS`] items as it is read: a page of a
/// few megabytes of tiny items would otherwise take a hundred times that in memory.
pub fn bounded<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Items<T>(std::marker::PhantomData<T>);

    impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Items<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_ITEMS} items")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() >= MAX_ITEMS {
                    return Err(serde::de::Error::custom(format!(
                        "a list of more than {MAX_ITEMS} items"
                    )));
                }
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_seq(Items(std::marker::PhantomData))
}

/// A listing's page: a list, bounded.
#[derive(serde::Deserialize)]
#[serde(transparent, bound(deserialize = "T: serde::Deserialize<'de>"))]
struct Listed<T> {
    #[serde(deserialize_with = "bounded")]
    items: Vec<T>,
}

/// `text` cut to [`MAX_QUOTED_CHARS`] characters.
pub fn quoted(text: &str) -> String {
    let mut cut: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}
/// Items asked for per page, where the forge lets the caller choose.
pub const PER_PAGE: &str = "100";

/// How the forge is reached, from the host or the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub timeout: Duration,
    /// Roots to trust instead of the system's (a self-hosted forge with a private CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// A successful answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The body as `T`.
    pub fn json<T: DeserializeOwned>(&self, forge: &str, what: &str) -> Result<T, ForgeError> {
        serde_json::from_slice(&self.bytes).map_err(|error| {
            // serde quotes what it did not expect: a forge's text, of any length.
            ForgeError::Unexpected(format!(
                "{what}: not what {forge} answers ({})",
                quoted(&error.to_string())
            ))
        })
    }

    /// The `rel="next"` link of RFC 8288's `Link` header (GitHub, GitLab, Gitea).
    pub fn next_link(&self) -> Option<String> {
        let link = self.headers.get(reqwest::header::LINK)?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (target, params) = part.split_once(';')?;
            let is_next = params
                .split(';')
                .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            is_next.then(|| target.to_owned())
        })
    }
}

/// One forge's API.
pub struct Api {
    client: reqwest::Client,
    base: Url,
    /// What error messages call the forge.
    forge: &'static str,
    /// The credential's header and the forge's own (API version, media type).
    headers: HeaderMap,
    /// Texts never to repeat: the token and the header value made from it.
    secrets: Vec<String>,
}

impl Api {
    /// `base` is the API's base URL; `auth` the header that carries the credential made from
    /// `token`; `fixed` headers the forge wants on every request.
    pub fn new(
        forge: &'static str,
        base: &str,
        auth: (HeaderName, String),
        token: &str,
        fixed: &[(&'static str, &'static str)],
        options: &Options,
    ) -> Result<Api, ForgeError> {
        let setup = |what: String| ForgeError::Setup(format!("{forge}: {what}"));
        let base = Url::parse(&format!("{}/", base.trim_end_matches('/')))
            .map_err(|e| setup(format!("API URL: {e}")))?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(setup("the API URL is not http(s)".to_owned()));
        }
        let mut value = HeaderValue::from_str(&auth.1)
            .map_err(|_| setup("the token holds characters a header cannot".to_owned()))?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        for (name, fixed) in fixed {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(fixed),
            );
        }
        headers.insert(auth.0, value);
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gitward/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &options.ca_file {
            let pem = std::fs::read(ca).map_err(|e| setup(format!("CA file: {e}")))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("CA file holds no PEM certificate: {e}")))?;
            builder = builder.tls_certs_only(roots);
        }
        let client = builder
            .build()
            .map_err(|e| setup(format!("HTTP client: {e}")))?;
        // The header value first: it holds the token. A Basic credential may come back in any
        // of its forms: encoded, or its password half.
        let mut secrets = vec![auth.1.clone(), token.to_owned()];
        if let Some(encoded) = auth.1.strip_prefix("Basic ") {
            secrets.push(encoded.to_owned());
        }
        if let Some((_, password)) = token.split_once(':') {
            secrets.push(password.to_owned());
        }
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Api {
            client,
            base,
            forge,
            headers,
            secrets,
        })
    }

    pub fn forge(&self) -> &'static str {
        self.forge
    }

    /// The URL of `path` below the base (`repos/o/r/statuses/abc`), with `query`.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ForgeError> {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ForgeError::Setup(format!("{}: no URL for `{path}`: {e}", self.forge)))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.same_origin(url)
    }

    /// `url` when it is below the API's base: a link in an answer must not take the token
    /// anywhere else.
    pub fn same_origin(&self, url: Url) -> Result<Url, ForgeError> {
        if url.origin() == self.base.origin() && url.path().starts_with(self.base.path()) {
            Ok(url)
        } else {
            Err(ForgeError::Unexpected(format!(
                "{}: a link points outside the API ({})",
                self.forge,
                crate::redact::credentials(url.as_str())
            )))
        }
    }

    /// Sends one request; a successful answer comes back, any other as a failure. `what`
    /// names the call in messages.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer, ForgeError> {
        let mut request = self
            .client
            .request(method, url)
            .headers(self.headers.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| {
            ForgeError::Unavailable(self.scrub(format!(
                "{what}: {} did not answer: {}",
                self.forge,
                error.without_url()
            )))
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_bounded(response)
            .await
            .map_err(|e| ForgeError::Unexpected(format!("{what}: {}: {e}", self.forge)))?;
        if status.is_success() {
            return Ok(Answer {
                status,
                headers,
                bytes,
            });
        }
        let said = quoted(&crate::sinks::http::one_line(&String::from_utf8_lossy(
            &bytes,
        )));
        let text = self.scrub(format!("{what}: {} answered {status}: {said}", self.forge));
        Err(
            if status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error()
            {
                ForgeError::Unavailable(text)
            } else if status == StatusCode::NOT_FOUND {
                ForgeError::NotFound(text)
            } else {
                ForgeError::Refused(text)
            },
        )
    }

    /// [`Api::send`] and the answer's JSON.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<T, ForgeError> {
        self.send(method, url, body, what)
            .await?
            .json(self.forge, what)
    }

    /// Every item of a listing that pages with `Link: <…>; rel="next"`, at most
    /// [`MAX_PAGES`] pages.
    pub async fn linked_pages<T: DeserializeOwned>(
        &self,
        first: Url,
        what: &str,
    ) -> Result<Vec<T>, ForgeError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ForgeError::Unexpected(format!(
                    "{what}: {} has more than {MAX_PAGES} pages of it",
                    self.forge
                )));
            }
            let answer = self.send(Method::GET, url, None, what).await?;
            let page: Listed<T> = answer.json(self.forge, what)?;
            items.extend(page.items);
            if items.len() > MAX_ITEMS {
                return Err(ForgeError::Unexpected(format!(
                    "{what}: {} lists more than {MAX_ITEMS} of them",
                    self.forge
                )));
            }
            if let Some(link) = answer.next_link() {
                let url = Url::parse(&link).map_err(|e| {
                    ForgeError::Unexpected(format!("{what}: a next-page link that is no URL: {e}"))
                })?;
                next = Some(self.same_origin(url)?);
            }
        }
        Ok(items)
    }

    /// `text` with the credential taken out, should a forge have echoed it.
    fn scrub(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer: longer, or cut off, is an error.
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_long = || format!("an answer longer than {MAX_ANSWER_BYTES} bytes");
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_long());
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(too_long());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(error) => return Err(format!("the answer was cut off: {}", error.without_url())),
        }
    }
}

/// `segment` made safe for one path segment (`group/project` → `group%2Fproject`).
pub fn segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api {
        Api::new(
            "GitHub",
            "https://ghe.example.com/api/v3",
            (
                reqwest::header::AUTHORIZATION,
                "Bearer s3cret-token".to_owned(),
            ),
            "s3cret-token",
            &[],
            &Options::default(),
        )
        .unwrap()
    }

    #[test]
    fn links_that_leave_the_api_are_refused() {
        let api = api();
        assert!(api.url("repos/o/r/statuses/abc", &[]).is_ok());
        for link in [
            "https://evil.example/api/v3/repos/o/r",
            "http://ghe.example.com/api/v3/repos/o/r",
            "https://ghe.example.com:444/api/v3/repos/o/r",
            "https://ghe.example.com/other/repos",
        ] {
            assert!(
                api.same_origin(Url::parse(link).unwrap()).is_err(),
                "{link}"
            );
        }
        assert!(api.url("../../x", &[]).is_err());
        let rooted = api.url("//evil.example/x", &[]).unwrap();
        assert_eq!(rooted.host_str(), Some("ghe.example.com"));
    }

    #[test]
    fn next_links_are_read_from_the_link_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=3>; rel=\"next\"",
            ),
        );
        let answer = Answer {
            status: StatusCode::OK,
            headers,
            bytes: Vec::new(),
        };
        assert_eq!(
            answer.next_link().as_deref(),
            Some("https://api.github.com/x?page=3")
        );
    }

    #[test]
    fn the_token_never_comes_back_in_a_message() {
        let api = api();
        assert_eq!(
            api.scrub("echo: Bearer s3cret-token and s3cret-token".to_owned()),
            "echo: [redacted] and [redacted]"
        );
    }
}
