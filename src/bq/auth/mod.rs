//! Credentials for the BigQuery API: none (an emulator), or a bearer token
//! from the credential chain Google's client libraries follow (`chain.rs`).
//!
//! This is the only module that obtains tokens. Tokens live in the cache
//! here and in the `Authorization` header of each request; nothing
//! implements `Debug` with a token in it, and errors name files, fields and
//! endpoints, never a token, a key or a subject token.
//!
//! - `chain.rs`: which credentials to use, in Google's order, and the
//!   "nothing found" error naming every source tried.
//! - `file.rs`: credential files by `type`, with errors naming the field.
//! - `flows.rs`: one token fetch per kind of credential.
//! - `external.rs`: subject tokens for workload identity federation.
//! - `metadata.rs`: the metadata server (probe and token).

mod chain;
mod external;
mod file;
mod flows;
mod http;
mod metadata;

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

pub(crate) use chain::discover;
use flows::Source;

use super::BqError;

/// OAuth scope for BigQuery reads, writes and jobs.
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// The scope a token needs to call IAM (impersonation): source credentials
/// of an impersonation are asked for this one, not [`SCOPE`].
pub(crate) const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How requests are authorised.
pub(crate) enum Credentials {
    /// No `Authorization` header (a local emulator).
    None,
    /// A bearer token from Google credentials, cached and refreshed before it expires.
    Google(Box<Provider>),
}

/// A source of tokens with its cache.
pub(crate) struct Provider {
    source: Source,
    /// Where the credentials come from, for messages ("credentials file /x.json").
    described: String,
    /// Project billed for quota (`x-goog-user-project`), from the file or the environment.
    quota_project: Option<String>,
    http: reqwest::Client,
    cached: Mutex<Option<Token>>,
}

/// An access token and when it stops being valid.
pub(super) struct Token {
    pub secret: String,
    /// `None`: no expiry known (a token handed in through the environment).
    pub expires_at: Option<Instant>,
    /// Lifetime at issue, which sets how early it is refreshed.
    pub lifetime: Duration,
}

impl Token {
    pub fn expiring_in(secret: String, lifetime: Option<Duration>) -> Token {
        let now = Instant::now();
        Token {
            secret,
            expires_at: lifetime.map(|l| now + l),
            lifetime: lifetime.unwrap_or(Duration::MAX),
        }
    }
}

/// Refresh margin: Google's libraries refresh 3 min 45 s before expiry; a
/// short-lived token (minutes or seconds) is refreshed after three quarters
/// of its life, so it is never sent in its last quarter.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(225))
}

/// Whether `token` must be replaced before it is sent at `now`.
fn needs_refresh(token: &Token, now: Instant) -> bool {
    match token.expires_at {
        None => false,
        Some(at) => now + refresh_margin(token.lifetime) >= at,
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("Credentials::None"),
            Credentials::Google(p) => write!(f, "Credentials::Google({})", p.described),
        }
    }
}

impl Credentials {
    fn google(
        source: Source,
        described: String,
        quota_project: Option<String>,
        http: reqwest::Client,
    ) -> Credentials {
        Credentials::Google(Box::new(Provider {
            source,
            described,
            quota_project,
            http,
            cached: Mutex::new(None),
        }))
    }

    /// The bearer token for the next request, if any: the cached one while
    /// it is fresh, else a new one (one fetch at a time).
    pub(crate) async fn token(&self) -> Result<Option<String>, BqError> {
        let Credentials::Google(p) = self else {
            return Ok(None);
        };
        let mut cached = p.cached.lock().await;
        if let Some(t) = cached
            .as_ref()
            .filter(|t| !needs_refresh(t, Instant::now()))
        {
            return Ok(Some(t.secret.clone()));
        }
        let fresh = p.source.fetch(&p.http, &p.described, SCOPE).await?;
        tracing::debug!(
            credentials = %p.described,
            lifetime_s = fresh.expires_at.map(|_| fresh.lifetime.as_secs()),
            "obtained an access token"
        );
        let secret = fresh.secret.clone();
        *cached = Some(fresh);
        Ok(Some(secret))
    }

    /// Drops the cached token, if it can be replaced (not a token handed in
    /// through the environment): BigQuery refused it (401: revoked, or
    /// expired early), so the next request fetches a new one. Whether it did.
    pub(crate) async fn invalidate_last(&self) -> bool {
        let Credentials::Google(p) = self else {
            return false;
        };
        if matches!(p.source, Source::Static(_)) {
            return false;
        }
        p.cached.lock().await.take().is_some()
    }

    /// The project to bill for quota (`x-goog-user-project`), if set.
    pub(crate) fn quota_project(&self) -> Option<&str> {
        match self {
            Credentials::Google(p) => p.quota_project.as_deref(),
            Credentials::None => None,
        }
    }
}

/// An authentication error; a trailing "\nhint: ..." line becomes its hint.
pub(super) fn auth_error(message: String) -> BqError {
    match message.split_once("\nhint: ") {
        Some((message, hint)) => BqError::Auth {
            message: message.to_string(),
            hint: Some(hint.to_string()),
        },
        None => BqError::Auth {
            message,
            hint: None,
        },
    }
}

#[cfg(test)]
mod tests;
