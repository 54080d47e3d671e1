//! HTTP calls to token endpoints (OAuth, STS, IAM credentials, metadata
//! server), and what their answers and failures mean.
//!
//! Not reaching an endpoint, or its 5xx/429, is transient: retried like any
//! API call and ending as "unavailable" (exit 69) if it lasts. Any other
//! refusal is an authentication error (77). Error messages quote only the
//! endpoint's `error`/`error_description`/`error.message`, never a request.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use super::{Token, auth_error};
use crate::bq::BqError;

/// One token request's whole budget; a token endpoint that hangs must not
/// hold a run for longer.
const TOKEN_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends `request` to `url` (described as `what`) and returns its JSON body.
pub(super) async fn send(request: RequestBuilder, what: &str, url: &str) -> Result<Value, BqError> {
    let (status, body) = send_for_body(request, what, url).await?;
    serde_json::from_slice(&body).map_err(|e| {
        auth_error(format!(
            "{what} at {url} answered {status} with a body that is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Sends `request` to a token endpoint: a success's status and body; an
/// unreachable endpoint is transient, a refusal an authentication error
/// (or transient for 5xx and 429), both naming `what` and `url`.
pub(super) async fn send_for_body(
    request: RequestBuilder,
    what: &str,
    url: &str,
) -> Result<(StatusCode, Vec<u8>), BqError> {
    let response = request
        .timeout(TOKEN_CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| unreachable(what, url, &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| unreachable(what, url, &e))?;
    if !status.is_success() {
        return Err(refused(what, url, status, &body));
    }
    Ok((status, body.to_vec()))
}

fn unreachable(what: &str, url: &str, e: &reqwest::Error) -> BqError {
    let mut err = crate::bq::transport_error("oauth2.token", e);
    if let BqError::Transport { message, .. } = &mut err {
        *message = format!("cannot reach {what} at {url}: {message}");
    }
    err
}

fn refused(what: &str, url: &str, status: StatusCode, body: &[u8]) -> BqError {
    let said = endpoint_message(body);
    let message = format!("{what} at {url} refused the request (http {status}): {said}");
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return BqError::Api {
            operation: "oauth2.token",
            status: status.as_u16(),
            reason: "backendError".to_string(),
            message,
            attempts: 1,
            elapsed: Duration::ZERO,
            retry_after: None,
        };
    }
    auth_error(message)
}

/// What an endpoint said about a refusal, from the fields that carry no secret.
fn endpoint_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let pick = |v: &Value| -> Option<String> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match (text("error"), text("error_description")) {
            (Some(e), Some(d)) => Some(format!("{e}: {d}")),
            (Some(e), None) => Some(e),
            _ => v
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    };
    let said = parsed
        .as_ref()
        .and_then(pick)
        .unwrap_or_else(|| "no details".to_string());
    said.chars().take(300).collect()
}

/// An OAuth token answer (`access_token`, `expires_in`) or an IAM
/// credentials one (`accessToken`, `expireTime`).
pub(super) fn token_from(body: &Value, what: &str) -> Result<Token, BqError> {
    let secret = body
        .get("access_token")
        .or_else(|| body.get("accessToken"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| auth_error(format!("{what} answered without an access token")))?;
    let lifetime = match body.get("expires_in") {
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .map(Duration::from_secs),
        None => body
            .get("expireTime")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|at| {
                (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            }),
    };
    // Google's tokens always say when they expire; without it, assume an hour, as its libraries do.
    Ok(Token::expiring_in(
        secret.to_string(),
        Some(lifetime.unwrap_or(Duration::from_secs(3600))),
    ))
}
