//! The credential chain, in the order Google's client libraries follow:
//!
//! 1. `BQ_BACKFILL_ACCESS_TOKEN`: an access token handed in (an escape
//!    hatch; it is never refreshed, so it suits runs shorter than its life);
//! 2. `GOOGLE_APPLICATION_CREDENTIALS`: a credentials file;
//! 3. gcloud's application-default credentials file
//!    (`$CLOUDSDK_CONFIG/application_default_credentials.json`, else
//!    `~/.config/gcloud/application_default_credentials.json`);
//! 4. the metadata server, if a short probe finds one (`NO_GCE_CHECK=true`
//!    skips it).
//!
//! A source that is named but unusable (a file that does not exist or does
//! not parse) is an error, not a reason to try the next one: silently
//! running as a different identity is worse than stopping. Nothing found is
//! an error that lists every source tried.

use std::path::PathBuf;

use super::file;
use super::flows::Source;
use super::metadata::Metadata;
use super::{Credentials, auth_error};
use crate::bq::BqError;

pub(crate) const ACCESS_TOKEN_VAR: &str = "BQ_BACKFILL_ACCESS_TOKEN";

/// Finds the credentials to use. `http` is the client that later fetches tokens.
pub(crate) async fn discover(
    env: &dyn Fn(&str) -> Option<String>,
    http: &reqwest::Client,
) -> Result<Credentials, BqError> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let quota_env = set("GOOGLE_CLOUD_QUOTA_PROJECT");
    let found = |source: Source, described: String, quota: Option<String>| {
        Ok(Credentials::google(
            source,
            described,
            quota_env.clone().or(quota),
            http.clone(),
        ))
    };
    let mut tried = Vec::new();
    if let Some(token) = set(ACCESS_TOKEN_VAR) {
        return found(
            Source::Static(token.trim().to_string()),
            format!("${ACCESS_TOKEN_VAR}"),
            None,
        );
    }
    tried.push(format!("${ACCESS_TOKEN_VAR} is not set"));
    if let Some(path) = set("GOOGLE_APPLICATION_CREDENTIALS") {
        let path = PathBuf::from(path);
        let loaded = file::load(&path, env)
            .await
            .map_err(|e| named_by_env(e, "GOOGLE_APPLICATION_CREDENTIALS"))?;
        return found(
            loaded.source,
            format!("credentials file {}", path.display()),
            loaded.quota_project,
        );
    }
    tried.push("$GOOGLE_APPLICATION_CREDENTIALS is not set".to_string());
    match well_known_file(env) {
        Some(path) if path.is_file() => {
            let loaded = file::load(&path, env).await?;
            let described = format!("gcloud credentials file {}", path.display());
            return found(loaded.source, described, loaded.quota_project);
        }
        Some(path) => tried.push(format!("no gcloud credentials file at {}", path.display())),
        None => {
            tried.push("no gcloud config directory ($HOME and $CLOUDSDK_CONFIG unset)".to_string())
        }
    }
    let metadata = Metadata::from_env(env);
    if set("NO_GCE_CHECK").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1") {
        tried.push("the metadata server check is off (NO_GCE_CHECK)".to_string());
    } else if metadata.probe(http, metadata.is_default()).await {
        let described = format!("the metadata server at {}", metadata.base);
        return found(Source::Metadata(metadata), described, None);
    } else {
        tried.push(format!("no metadata server answered at {}", metadata.base));
    }
    Err(auth_error(format!(
        "no Google credentials found; tried: {}\nhint: point GOOGLE_APPLICATION_CREDENTIALS at a service-account key or workload identity federation file, run `gcloud auth application-default login`, or run where a metadata server is (GCE, GKE, Cloud Run, Cloud Composer); for a local emulator set BIGQUERY_EMULATOR_HOST",
        tried.join("; ")
    )))
}

/// gcloud's application-default credentials file.
fn well_known_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let dir = match set("CLOUDSDK_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(set("HOME")?).join(".config/gcloud"),
    };
    Some(dir.join("application_default_credentials.json"))
}

fn named_by_env(e: BqError, var: &str) -> BqError {
    match e {
        BqError::Auth { message, hint } => BqError::Auth {
            message: format!("{message} (named by ${var})"),
            hint,
        },
        other => other,
    }
}
