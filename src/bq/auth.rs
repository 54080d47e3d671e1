//! Credentials for the BigQuery API: none (emulator) or Google's
//! application-default credentials through yup-oauth2.
//!
//! Tokens live only inside yup-oauth2 and in the `Authorization` header of
//! each request; nothing here implements `Debug` with a token in it, and
//! errors carry yup-oauth2's description, never a token.

use std::path::{Path, PathBuf};

use yup_oauth2::authenticator::{ApplicationDefaultCredentialsTypes, DefaultAuthenticator};
use yup_oauth2::{
    ApplicationDefaultCredentialsFlowOpts, AuthorizedUserAuthenticator,
    ExternalAccountAuthenticator, ServiceAccountAuthenticator,
};

use super::BqError;

/// OAuth scope for BigQuery reads, writes and jobs.
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// How requests are authorised.
pub(crate) enum Credentials {
    /// No `Authorization` header (a local emulator).
    None,
    /// A bearer token from Google's application-default credentials;
    /// `source` says where they come from, for error messages.
    Google {
        auth: Box<DefaultAuthenticator>,
        source: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("Credentials::None"),
            Credentials::Google { source, .. } => write!(f, "Credentials::Google({source})"),
        }
    }
}

impl Credentials {
    /// Application-default credentials, looked up the way Google's client
    /// libraries do: `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's
    /// well-known file, then the metadata server.
    ///
    /// Unlike yup-oauth2's own ADC builder, a credentials file that exists
    /// but cannot be used is an error rather than a silent fall-back to the
    /// metadata server, and `authorized_user` (gcloud login) and
    /// `external_account` (workload identity federation) files are accepted.
    pub(crate) async fn application_default(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credentials, BqError> {
        let explicit = env("GOOGLE_APPLICATION_CREDENTIALS")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let well_known = env("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| {
                PathBuf::from(home).join(".config/gcloud/application_default_credentials.json")
            })
            .filter(|p| p.is_file());
        let (auth, source) = match explicit.or(well_known) {
            Some(path) => (
                from_file(&path).await?,
                format!("credentials file {}", path.display()),
            ),
            None => {
                let opts = ApplicationDefaultCredentialsFlowOpts::default();
                let auth =
                    match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts)
                        .await
                    {
                        ApplicationDefaultCredentialsTypes::InstanceMetadata(builder) => {
                            builder.build().await
                        }
                        ApplicationDefaultCredentialsTypes::ServiceAccount(builder) => {
                            builder.build().await
                        }
                    }
                    .map_err(|e| {
                        auth_error(format!("cannot set up metadata-server credentials: {e}"))
                    })?;
                let source = "the metadata server (no GOOGLE_APPLICATION_CREDENTIALS or gcloud \
                              credentials file found)";
                (auth, source.to_string())
            }
        };
        Ok(Credentials::Google {
            auth: Box::new(auth),
            source,
        })
    }

    /// The bearer token for the next request, if any.
    pub(crate) async fn token(&self) -> Result<Option<String>, BqError> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Google { auth, source } => {
                let token = auth
                    .token(&[SCOPE])
                    .await
                    .map_err(|e| token_error(source, &e))?;
                match token.token() {
                    Some(t) => Ok(Some(t.to_string())),
                    None => Err(auth_error(format!("{source} yielded no access token"))),
                }
            }
        }
    }
}

async fn from_file(path: &Path) -> Result<DefaultAuthenticator, BqError> {
    let shown = path.display();
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| auth_error(format!("cannot read credentials file {shown}: {e}")))?;
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    // Parse errors from serde may quote the file's content, which holds secrets: report only the position.
    let bad = |e: serde_json::Error| {
        auth_error(format!(
            "credentials file {shown} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    };
    let kind = serde_json::from_str::<Kind>(&text)
        .map_err(bad)?
        .kind
        .unwrap_or_default();
    let built = match kind.as_str() {
        "service_account" => {
            let key = yup_oauth2::parse_service_account_key(&text).map_err(|_| {
                auth_error(format!(
                    "credentials file {shown} is not a valid service account key"
                ))
            })?;
            ServiceAccountAuthenticator::builder(key).build().await
        }
        "authorized_user" => {
            let secret = serde_json::from_str(&text).map_err(bad)?;
            AuthorizedUserAuthenticator::builder(secret).build().await
        }
        "external_account" => {
            let secret = serde_json::from_str(&text).map_err(bad)?;
            ExternalAccountAuthenticator::builder(secret).build().await
        }
        other => {
            return Err(auth_error(format!(
                "credentials file {shown} has unsupported type {other:?} (expected service_account, authorized_user or external_account)"
            )));
        }
    };
    built.map_err(|e| auth_error(format!("cannot set up credentials from {shown}: {e}")))
}

/// A failed token fetch. Not reaching the token endpoint (the metadata
/// server restarting, a reset connection) is transient and retried like any
/// API call, ending as "unavailable" (exit 69) if it lasts; an answer from
/// the endpoint refusing the credentials is an authentication error (77).
fn token_error(source: &str, e: &yup_oauth2::Error) -> BqError {
    use yup_oauth2::Error as E;
    match e {
        E::HttpError(_) | E::HttpClientError(_) | E::LowLevelError(_) => BqError::Transport {
            operation: "oauth2.token",
            reason: "connectionError",
            message: format!("cannot reach the token endpoint of {source}: {e}"),
            attempts: 1,
            elapsed: std::time::Duration::ZERO,
        },
        _ => auth_error(format!("cannot obtain an access token from {source}: {e}")),
    }
}

fn auth_error(message: String) -> BqError {
    BqError::Auth { message }
}

#[cfg(test)]
mod token_error_tests {
    use super::*;

    #[test]
    fn an_unreachable_token_endpoint_is_transient_and_a_refusal_is_not() {
        let reset = yup_oauth2::Error::LowLevelError(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        ));
        let e = token_error("the metadata server", &reset);
        assert!(e.is_transient(), "{e}");
        assert_eq!(e.reason(), "connectionError");
        assert!(e.to_string().contains("the metadata server"), "{e}");

        let refused = yup_oauth2::Error::UserError("invalid_grant".into());
        let e = token_error("key.json", &refused);
        assert!(!e.is_transient(), "{e}");
        assert!(matches!(e, BqError::Auth { .. }), "{e}");
    }
}
