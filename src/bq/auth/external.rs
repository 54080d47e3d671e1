//! Workload identity federation (`external_account` files, AIP-4117): a
//! subject token from a file, a URL or an executable, exchanged at Google's
//! Security Token Service, then optionally for a service account's token.
//! This is the file `google-github-actions/auth` writes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::flows::Impersonation;
use super::http::{send, token_from};
use super::{CLOUD_PLATFORM, Token, auth_error};
use crate::bq::BqError;

pub(super) struct External {
    pub audience: String,
    pub subject_token_type: String,
    pub token_url: String,
    pub subject: SubjectSource,
    pub impersonation: Option<Impersonation>,
    /// `workforce_pool_user_project`, sent as STS `options`.
    pub workforce_user_project: Option<String>,
    /// Shown in messages: the credentials file.
    pub shown: String,
}

/// Where the subject token comes from.
pub(super) enum SubjectSource {
    File {
        path: PathBuf,
        format: Format,
    },
    Url {
        url: String,
        headers: BTreeMap<String, String>,
        format: Format,
    },
    Executable(Executable),
}

/// How a file or URL holds the subject token.
pub(super) enum Format {
    Text,
    /// A JSON object; the token is the named field.
    Json(String),
}

pub(super) struct Executable {
    pub command: Vec<String>,
    pub timeout: Duration,
    pub output_file: Option<PathBuf>,
}

impl External {
    /// A token for `scope` (STS is asked for cloud-platform when the
    /// federated token is then exchanged for a service account's).
    pub(super) async fn fetch(
        &self,
        http: &reqwest::Client,
        scope: &str,
    ) -> Result<Token, BqError> {
        let subject = self.subject_token(http).await?;
        let what = "the Security Token Service (workload identity federation)";
        let scope = if self.impersonation.is_some() {
            CLOUD_PLATFORM
        } else {
            scope
        };
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_string(),
            ),
            ("audience", self.audience.clone()),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_string(),
            ),
            ("subject_token_type", self.subject_token_type.clone()),
            ("subject_token", subject),
            ("scope", scope.to_string()),
        ];
        if let Some(project) = &self.workforce_user_project {
            form.push((
                "options",
                serde_json::json!({"userProject": project}).to_string(),
            ));
        }
        let body = send(
            http.post(&self.token_url).form(&form),
            what,
            &self.token_url,
        )
        .await?;
        let federated = token_from(&body, what)?;
        match &self.impersonation {
            None => Ok(federated),
            Some(imp) => imp.exchange(http, &federated.secret).await,
        }
    }

    async fn subject_token(&self, http: &reqwest::Client) -> Result<String, BqError> {
        let token = match &self.subject {
            SubjectSource::File { path, format } => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    auth_error(format!(
                        "cannot read the subject token file {} named by {}: {e}",
                        path.display(),
                        self.shown
                    ))
                })?;
                extract(
                    &text,
                    format,
                    &format!("subject token file {}", path.display()),
                )?
            }
            SubjectSource::Url {
                url,
                headers,
                format,
            } => {
                let what = "the subject token URL (credential_source.url)";
                let mut request = http.get(url);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                match format {
                    Format::Json(_) => {
                        let body = send(request, what, url).await?;
                        extract(&body.to_string(), format, what)?
                    }
                    Format::Text => url_text(request, what, url).await?,
                }
            }
            SubjectSource::Executable(exe) => exe.run(self).await?,
        };
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(auth_error(format!(
                "the subject token of {} is empty",
                self.shown
            )));
        }
        Ok(token)
    }
}

async fn url_text(
    request: reqwest::RequestBuilder,
    what: &str,
    url: &str,
) -> Result<String, BqError> {
    let (_, body) = super::http::send_for_body(request, what, url).await?;
    String::from_utf8(body).map_err(|_| {
        auth_error(format!(
            "{what} at {url} answered with a body that is not UTF-8"
        ))
    })
}

/// The token in `text` per `format`; errors name `what` and the field, never the content.
fn extract(text: &str, format: &Format, what: &str) -> Result<String, BqError> {
    match format {
        Format::Text => Ok(text.to_string()),
        Format::Json(field) => {
            let v: Value = serde_json::from_str(text).map_err(|_| {
                auth_error(format!(
                    "{what} is not JSON (credential_source.format.type is \"json\")"
                ))
            })?;
            v.get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    auth_error(format!(
                        "{what} has no string field {field:?} (credential_source.format.subject_token_field_name)"
                    ))
                })
        }
    }
}

impl Executable {
    /// Runs the command per AIP-4117's executable-sourced credentials, or
    /// reuses an unexpired answer in `output_file`.
    async fn run(&self, ext: &External) -> Result<String, BqError> {
        if let Some(path) = &self.output_file
            && let Ok(text) = tokio::fs::read_to_string(path).await
            && let Ok(Some(token)) = executable_answer(&text, true, &ext.shown)
        {
            return Ok(token);
        }
        let mut cmd = tokio::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", &ext.audience)
            .env(
                "GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE",
                &ext.subject_token_type,
            )
            .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(imp) = &ext.impersonation
            && let Some(email) = impersonated_email(&imp.url)
        {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", email);
        }
        if let Some(path) = &self.output_file {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", path);
        }
        let shown = &ext.shown;
        let out = tokio::time::timeout(self.timeout, cmd.output())
            .await
            .map_err(|_| {
                auth_error(format!(
                    "the credential executable of {shown} did not finish within {} ms (credential_source.executable.timeout_millis)",
                    self.timeout.as_millis()
                ))
            })?
            .map_err(|e| auth_error(format!("cannot run the credential executable of {shown} ({:?}): {e}", self.command[0])))?;
        if !out.status.success() {
            return Err(auth_error(format!(
                "the credential executable of {shown} exited with {}",
                out.status
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        executable_answer(&text, false, shown)?.ok_or_else(|| {
            auth_error(format!(
                "the credential executable of {shown} returned an expired token"
            ))
        })
    }
}

/// The token in an executable's JSON answer; `Ok(None)` when it has
/// expired. `cached`: an `output_file`, where anything unusable means "run".
fn executable_answer(text: &str, cached: bool, shown: &str) -> Result<Option<String>, BqError> {
    let bad = |m: &str| auth_error(format!("the credential executable of {shown} {m}"));
    let v: Value =
        serde_json::from_str(text).map_err(|_| bad("printed something that is not JSON"))?;
    if v.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(bad("answered without \"version\": 1"));
    }
    if v.get("success").and_then(Value::as_bool) != Some(true) {
        let code = v.get("code").and_then(Value::as_str).unwrap_or("no code");
        let message = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(bad(&format!("reported failure: {code}: {message}")));
    }
    let expires = v.get("expiration_time").and_then(Value::as_i64);
    if cached && expires.is_none() {
        return Ok(None);
    }
    if expires.is_some_and(|at| at <= chrono::Utc::now().timestamp()) {
        return Ok(None);
    }
    let token = ["id_token", "saml_response"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .ok_or_else(|| bad("answered without \"id_token\" or \"saml_response\""))?;
    Ok(Some(token.to_string()))
}

/// The service account's e-mail in `.../serviceAccounts/EMAIL:generateAccessToken`.
fn impersonated_email(url: &str) -> Option<&str> {
    let tail = url.rsplit_once("/serviceAccounts/")?.1;
    tail.split_once(':').map(|(email, _)| email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_answers_are_read_per_aip_4117() {
        let future = chrono::Utc::now().timestamp() + 600;
        let ok = format!(
            r#"{{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:id_token","id_token":"T","expiration_time":{future}}}"#
        );
        assert_eq!(
            executable_answer(&ok, false, "f").unwrap().as_deref(),
            Some("T")
        );
        let expired = r#"{"version":1,"success":true,"id_token":"T","expiration_time":1}"#;
        assert_eq!(executable_answer(expired, false, "f").unwrap(), None);
        let no_expiry = r#"{"version":1,"success":true,"id_token":"T"}"#;
        assert_eq!(
            executable_answer(no_expiry, false, "f").unwrap().as_deref(),
            Some("T")
        );
        assert_eq!(
            executable_answer(no_expiry, true, "f").unwrap(),
            None,
            "a cached answer needs an expiry"
        );
        let failed = r#"{"version":1,"success":false,"code":"401","message":"denied"}"#;
        let e = executable_answer(failed, false, "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("401: denied"), "{e}");
        assert!(
            executable_answer("SECRET", false, "f")
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
    }

    #[test]
    fn the_impersonated_email_comes_from_the_url() {
        let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken";
        assert_eq!(
            impersonated_email(url),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(impersonated_email("https://x/y"), None);
    }

    #[test]
    fn json_subject_tokens_name_the_missing_field_not_the_content() {
        let f = Format::Json("value".into());
        assert_eq!(extract(r#"{"value":"tok"}"#, &f, "u").unwrap(), "tok");
        let e = extract(r#"{"other":"SECRET"}"#, &f, "u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"value\"") && !e.contains("SECRET"), "{e}");
    }
}
