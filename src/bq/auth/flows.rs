//! One token fetch per kind of credentials.

use std::time::{Duration, Instant};

use serde_json::json;
use yup_oauth2::authenticator::DefaultAuthenticator;

use super::external::External;
use super::http::{send, token_from};
use super::metadata::Metadata;
use super::{CLOUD_PLATFORM, SCOPE, Token, auth_error};
use crate::bq::BqError;

/// Google's OAuth token endpoint, for `authorized_user` files without `token_uri`.
pub(super) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Where tokens come from.
pub(super) enum Source {
    /// An access token handed in through the environment; never refreshed.
    Static(String),
    /// A service-account key: a signed JWT exchanged at the key's `token_uri` (yup-oauth2).
    ServiceAccount(Box<DefaultAuthenticator>),
    /// gcloud's user login: a refresh token exchanged at `token_uri`.
    AuthorizedUser(AuthorizedUser),
    /// Workload identity federation: a subject token exchanged at STS.
    External(Box<External>),
    /// Another credential's token exchanged for a service account's.
    Impersonated(Box<Impersonated>),
    /// The metadata server of GCE, GKE, Cloud Run and Cloud Composer workers.
    Metadata(Metadata),
}

pub(super) struct AuthorizedUser {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub token_uri: String,
}

/// `generateAccessToken` on `url` with the source credentials' token.
pub(super) struct Impersonation {
    pub url: String,
    pub delegates: Vec<String>,
    pub lifetime: Duration,
}

pub(super) struct Impersonated {
    pub source: Source,
    pub impersonation: Impersonation,
}

impl Source {
    /// A new token for `scope` ([`SCOPE`] for BigQuery; the source of an
    /// impersonation is asked for [`CLOUD_PLATFORM`], which IAM requires);
    /// `described` says where the credentials come from. A refresh token
    /// and a static token carry the scopes they were granted with.
    pub(super) async fn fetch(
        &self,
        http: &reqwest::Client,
        described: &str,
        scope: &str,
    ) -> Result<Token, BqError> {
        match self {
            Source::Static(secret) => Ok(Token::expiring_in(secret.clone(), None)),
            Source::ServiceAccount(auth) => service_account(auth, described, scope).await,
            Source::AuthorizedUser(user) => user.fetch(http).await,
            Source::External(ext) => ext.fetch(http, scope).await,
            Source::Impersonated(imp) => {
                let source = Box::pin(imp.source.fetch(http, described, CLOUD_PLATFORM)).await?;
                imp.impersonation.exchange(http, &source.secret).await
            }
            Source::Metadata(md) => md.token(http, scope).await,
        }
    }
}

impl AuthorizedUser {
    async fn fetch(&self, http: &reqwest::Client) -> Result<Token, BqError> {
        let what = "the OAuth token endpoint (authorized_user refresh token)";
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("refresh_token", self.refresh_token.as_str()),
        ];
        let body = send(
            http.post(&self.token_uri).form(&form),
            what,
            &self.token_uri,
        )
        .await?;
        token_from(&body, what)
    }
}

impl Impersonation {
    /// Exchanges `bearer` (the source credentials' token) for the service account's.
    pub(super) async fn exchange(
        &self,
        http: &reqwest::Client,
        bearer: &str,
    ) -> Result<Token, BqError> {
        let what = "the IAM credentials endpoint (service account impersonation)";
        let body = json!({
            "scope": [SCOPE],
            "delegates": self.delegates,
            "lifetime": format!("{}s", self.lifetime.as_secs()),
        });
        let request = http.post(&self.url).bearer_auth(bearer).json(&body);
        let answer = send(request, what, &self.url).await?;
        token_from(&answer, what)
    }
}

/// yup-oauth2 signs the JWT and calls the key's `token_uri`; its failures
/// to reach the endpoint are transient, its refusals are not.
async fn service_account(
    auth: &DefaultAuthenticator,
    described: &str,
    scope: &str,
) -> Result<Token, BqError> {
    use yup_oauth2::Error as E;
    let fetched = tokio::time::timeout(Duration::from_secs(15), auth.token(&[scope])).await;
    let token = match fetched {
        Err(_) => {
            return Err(transient(format!(
                "the token endpoint of {described} did not answer within 15 s"
            )));
        }
        Ok(Err(e @ (E::HttpError(_) | E::HttpClientError(_) | E::LowLevelError(_)))) => {
            return Err(transient(format!(
                "cannot reach the token endpoint of {described}: {e}"
            )));
        }
        Ok(Err(e)) => {
            return Err(auth_error(format!(
                "cannot obtain an access token from {described}: {e}"
            )));
        }
        Ok(Ok(token)) => token,
    };
    let secret = token
        .token()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| auth_error(format!("{described} yielded no access token")))?;
    let lifetime = token.expiration_time().map(|at| {
        let secs = at.unix_timestamp() - chrono::Utc::now().timestamp();
        Duration::from_secs(secs.max(0) as u64)
    });
    let mut t = Token::expiring_in(secret.to_string(), lifetime);
    t.expires_at = t
        .expires_at
        .or(Some(Instant::now() + Duration::from_secs(3600)));
    Ok(t)
}

fn transient(message: String) -> BqError {
    BqError::Transport {
        operation: "oauth2.token",
        reason: "connectionError",
        message,
        attempts: 1,
        elapsed: Duration::ZERO,
    }
}
