//! Credential files, by their `type`: `service_account`, `authorized_user`,
//! `external_account`, `impersonated_service_account`. A file that cannot be
//! read, is not JSON, lacks a field or has an unknown type is an error
//! naming the file and the field — never quoting the content, which holds
//! secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use yup_oauth2::ServiceAccountAuthenticator;

use super::auth_error;
use super::external::{Executable, External, Format, SubjectSource};
use super::flows::{AuthorizedUser, GOOGLE_TOKEN_URI, Impersonated, Impersonation, Source};
use crate::bq::BqError;

/// A parsed credentials file.
pub(super) struct Loaded {
    pub source: Source,
    pub quota_project: Option<String>,
}

/// Reads and parses the credentials file at `path`.
pub(super) async fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, BqError> {
    let shown = format!("credentials file {}", path.display());
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| auth_error(format!("cannot read {shown}: {e}")))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        auth_error(format!(
            "{shown} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| auth_error(format!("{shown} is not a JSON object")))?;
    let fields = Fields {
        obj,
        shown: &shown,
        prefix: "",
    };
    let source = fields.source(env).await?;
    Ok(Loaded {
        source,
        quota_project: fields.optional("quota_project_id")?,
    })
}

/// One JSON object of a credentials file; `prefix` is its path in the file.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    shown: &'a str,
    prefix: &'a str,
}

impl Fields<'_> {
    fn missing(&self, name: &str, what: &str) -> BqError {
        auth_error(format!(
            "{}: field \"{}{name}\" is missing or not {what}",
            self.shown, self.prefix
        ))
    }

    fn required(&self, name: &str) -> Result<String, BqError> {
        match self.obj.get(name).and_then(Value::as_str) {
            Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
            _ => Err(self.missing(name, "a non-empty string")),
        }
    }

    fn optional(&self, name: &str) -> Result<Option<String>, BqError> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.missing(name, "a string")),
        }
    }

    fn object(&self, name: &str) -> Result<&Map<String, Value>, BqError> {
        self.obj
            .get(name)
            .and_then(Value::as_object)
            .ok_or_else(|| self.missing(name, "an object"))
    }

    async fn source(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Source, BqError> {
        let kind = self.required("type")?;
        match kind.as_str() {
            "service_account" => self.service_account().await,
            "authorized_user" => Ok(Source::AuthorizedUser(AuthorizedUser {
                client_id: self.required("client_id")?,
                client_secret: self.required("client_secret")?,
                refresh_token: self.required("refresh_token")?,
                token_uri: self
                    .optional("token_uri")?
                    .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_string()),
            })),
            "external_account" => Ok(Source::External(Box::new(self.external(env)?))),
            "impersonated_service_account" => self.impersonated(env).await,
            other => Err(auth_error(format!(
                "{}: field \"{}type\" is {other:?}, which bq-backfill does not support\nhint: use a service_account, authorized_user, external_account or impersonated_service_account file",
                self.shown, self.prefix
            ))),
        }
    }

    async fn service_account(&self) -> Result<Source, BqError> {
        for name in ["client_email", "private_key", "token_uri"] {
            self.required(name)?;
        }
        let key: yup_oauth2::ServiceAccountKey =
            serde_json::from_value(Value::Object(self.obj.clone())).map_err(|_| {
                auth_error(format!(
                    "{}: {}is not a valid service account key",
                    self.shown, self.prefix
                ))
            })?;
        let client = token_client()
            .map_err(|e| auth_error(format!("cannot set up TLS for the token endpoint: {e}")))?;
        let auth = ServiceAccountAuthenticator::with_client(key, client)
            .build()
            .await
            .map_err(|_| {
                auth_error(format!(
                    "{}: field \"{}private_key\" is not a usable PEM RSA private key",
                    self.shown, self.prefix
                ))
            })?;
        Ok(Source::ServiceAccount(Box::new(auth)))
    }

    fn impersonation(&self, lifetime: Option<u64>) -> Result<Option<Impersonation>, BqError> {
        let Some(url) = self.optional("service_account_impersonation_url")? else {
            return Ok(None);
        };
        let delegates = match self.obj.get("delegates") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|d| {
                    d.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.missing("delegates", "a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(self.missing("delegates", "a list of strings")),
        };
        Ok(Some(Impersonation {
            url,
            delegates,
            lifetime: Duration::from_secs(lifetime.unwrap_or(3600)),
        }))
    }

    async fn impersonated(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Source, BqError> {
        let impersonation = self.impersonation(None)?.ok_or_else(|| {
            self.missing("service_account_impersonation_url", "a non-empty string")
        })?;
        let prefix = format!("{}source_credentials.", self.prefix);
        let inner = Fields {
            obj: self.object("source_credentials")?,
            shown: self.shown,
            prefix: &prefix,
        };
        let source = Box::pin(inner.source(env)).await?;
        Ok(Source::Impersonated(Box::new(Impersonated {
            source,
            impersonation,
        })))
    }

    fn external(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<External, BqError> {
        // `{}` or an absent lifetime is Google's default hour.
        let lifetime = match self
            .obj
            .get("service_account_impersonation")
            .and_then(|v| v.get("token_lifetime_seconds"))
        {
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| (600..=43_200).contains(n))
                    .ok_or_else(|| {
                        self.missing(
                            "service_account_impersonation.token_lifetime_seconds",
                            "an integer from 600 to 43200",
                        )
                    })?,
            ),
            None => None,
        };
        let prefix = format!("{}credential_source.", self.prefix);
        let cs = Fields {
            obj: self.object("credential_source")?,
            shown: self.shown,
            prefix: &prefix,
        };
        Ok(External {
            audience: self.required("audience")?,
            subject_token_type: self.required("subject_token_type")?,
            token_url: self.required("token_url")?,
            subject: cs.subject_source(env)?,
            impersonation: self.impersonation(lifetime)?,
            workforce_user_project: self.optional("workforce_pool_user_project")?,
            shown: self.shown.to_string(),
        })
    }

    /// `credential_source`: exactly one of `file`, `url`, `executable`.
    fn subject_source(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SubjectSource, BqError> {
        let given: Vec<&str> = ["file", "url", "executable"]
            .into_iter()
            .filter(|k| self.obj.contains_key(*k))
            .collect();
        if given.len() > 1 {
            return Err(auth_error(format!(
                "{}: \"{}\" has {}; it takes exactly one of \"file\", \"url\" or \"executable\"",
                self.shown,
                self.prefix.trim_end_matches('.'),
                given.join(" and ")
            )));
        }
        let format = self.format()?;
        if let Some(path) = self.optional("file")? {
            return Ok(SubjectSource::File {
                path: PathBuf::from(path),
                format,
            });
        }
        if let Some(url) = self.optional("url")? {
            let mut headers = BTreeMap::new();
            if let Some(h) = self.obj.get("headers") {
                let h = h
                    .as_object()
                    .ok_or_else(|| self.missing("headers", "an object of strings"))?;
                for (k, v) in h {
                    let v = v
                        .as_str()
                        .ok_or_else(|| self.missing(&format!("headers.{k}"), "a string"))?;
                    headers.insert(k.clone(), v.to_string());
                }
            }
            return Ok(SubjectSource::Url {
                url,
                headers,
                format,
            });
        }
        if self.obj.contains_key("executable") {
            return self.executable(env);
        }
        Err(auth_error(format!(
            "{}: \"{}\" needs one of \"file\", \"url\" or \"executable\"",
            self.shown,
            self.prefix.trim_end_matches('.')
        )))
    }

    fn format(&self) -> Result<Format, BqError> {
        let Some(f) = self.obj.get("format") else {
            return Ok(Format::Text);
        };
        let prefix = format!("{}format.", self.prefix);
        let f = Fields {
            obj: f
                .as_object()
                .ok_or_else(|| self.missing("format", "an object"))?,
            shown: self.shown,
            prefix: &prefix,
        };
        match f.optional("type")?.as_deref() {
            None | Some("text") => Ok(Format::Text),
            Some("json") => Ok(Format::Json(f.required("subject_token_field_name")?)),
            Some(other) => Err(auth_error(format!(
                "{}: field \"{prefix}type\" is {other:?}; expected \"text\" or \"json\"",
                self.shown
            ))),
        }
    }

    fn executable(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<SubjectSource, BqError> {
        if env("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES").as_deref() != Some("1") {
            return Err(auth_error(format!(
                "{} uses executable-sourced credentials, which run a command\nhint: set GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1 to allow it, as Google's client libraries require",
                self.shown
            )));
        }
        let prefix = format!("{}executable.", self.prefix);
        let exe = Fields {
            obj: self.object("executable")?,
            shown: self.shown,
            prefix: &prefix,
        };
        let command: Vec<String> = exe
            .required("command")?
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let timeout_ms = match exe.obj.get("timeout_millis") {
            None => 30_000,
            Some(v) => v
                .as_u64()
                .filter(|ms| (5_000..=120_000).contains(ms))
                .ok_or_else(|| exe.missing("timeout_millis", "an integer from 5000 to 120000"))?,
        };
        Ok(SubjectSource::Executable(Executable {
            command,
            timeout: Duration::from_millis(timeout_ms),
            output_file: exe.optional("output_file")?.map(PathBuf::from),
        }))
    }
}

/// The HTTP client yup-oauth2 signs service-account JWTs for: Mozilla's
/// roots compiled in (like reqwest's), so a worker without a CA store can
/// still reach the token endpoint, and a 10 s connect timeout.
type TokenConnector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

fn token_client() -> Result<yup_oauth2::CustomHyperClientBuilder<TokenConnector>, rustls::Error> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https);
    Ok(yup_oauth2::CustomHyperClientBuilder::from(client))
}
