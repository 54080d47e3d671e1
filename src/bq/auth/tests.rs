//! Pure parts of the credential chain: refresh timing, file errors, the
//! order of sources. Flows against stand-ins for Google's endpoints are in
//! tests/e2e/auth.rs, through the real binary.

use std::time::{Duration, Instant};

use super::*;

fn token(lifetime: Duration) -> Token {
    Token::expiring_in("t".into(), Some(lifetime))
}

#[test]
fn tokens_are_refreshed_before_they_expire() {
    let now = Instant::now();
    let hour = token(Duration::from_secs(3600));
    assert!(!needs_refresh(&hour, now));
    assert!(!needs_refresh(&hour, now + Duration::from_secs(3600 - 226)));
    assert!(
        needs_refresh(&hour, now + Duration::from_secs(3600 - 224)),
        "Google's 3 min 45 s margin"
    );
    let short = token(Duration::from_secs(5));
    assert!(!needs_refresh(&short, now + Duration::from_millis(3500)));
    assert!(
        needs_refresh(&short, now + Duration::from_millis(3800)),
        "the last quarter of a 5 s token"
    );
    let handed_in = Token::expiring_in("t".into(), None);
    assert!(!needs_refresh(
        &handed_in,
        now + Duration::from_secs(86_400)
    ));
}

async fn load_error(body: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creds.json");
    std::fs::write(&path, body).unwrap();
    let p = path.to_string_lossy().to_string();
    let env = |k: &str| {
        if k == "GOOGLE_APPLICATION_CREDENTIALS" {
            Some(p.clone())
        } else {
            env(k)
        }
    };
    let http = reqwest::Client::new();
    let err = discover(&env, &http).await.expect_err("an error");
    assert!(err.is_permission(), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("SECRET"), "no secret in {shown}");
    assert!(shown.contains("creds.json"), "names the file: {shown}");
    shown
}

#[tokio::test]
async fn unusable_files_name_the_file_and_the_field_never_the_content() {
    let none = |_: &str| None;
    let cases: &[(&str, &str)] = &[
        ("{\"type\": \"service_account\", SECRET", "not valid JSON"),
        (r#"["SECRET"]"#, "not a JSON object"),
        (r#"{"private_key": "SECRET"}"#, "field \"type\""),
        (
            r#"{"type": "gdch_service_account", "token": "SECRET"}"#,
            "does not support",
        ),
        (
            r#"{"type": "service_account", "private_key": 42, "client_email": "SECRET-MAIL", "token_uri": "x"}"#,
            "field \"private_key\"",
        ),
        (
            r#"{"type": "service_account", "private_key": "SECRET", "client_email": "a@b", "token_uri": "http://x"}"#,
            "not a usable PEM",
        ),
        (
            r#"{"type": "authorized_user", "client_id": "c", "refresh_token": "SECRET"}"#,
            "field \"client_secret\"",
        ),
        (
            r#"{"type": "external_account", "audience": "a", "subject_token_type": "t", "token_url": "u", "credential_source": {"headers": {"Authorization": "SECRET"}}}"#,
            "needs one of",
        ),
        (
            r#"{"type": "external_account", "audience": "a", "subject_token_type": "t", "token_url": "u", "credential_source": {"url": "http://x", "format": {"type": "json"}}}"#,
            "credential_source.format.subject_token_field_name",
        ),
        (
            r#"{"type": "external_account", "audience": "a", "subject_token_type": "t", "token_url": "u", "credential_source": {"executable": {"command": "/bin/SECRET"}}}"#,
            "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES",
        ),
        (
            r#"{"type": "impersonated_service_account", "service_account_impersonation_url": "http://x", "source_credentials": {"type": "authorized_user", "client_id": "c", "client_secret": "SECRET"}}"#,
            "field \"source_credentials.refresh_token\"",
        ),
        (
            r#"{"type": "impersonated_service_account", "source_credentials": {}}"#,
            "field \"service_account_impersonation_url\"",
        ),
        (
            r#"{"type": "external_account", "audience": "a", "subject_token_type": "t", "token_url": "u", "credential_source": {"file": "/SECRET", "url": "http://x"}}"#,
            "has file and url",
        ),
        (
            r#"{"type": "external_account", "audience": "a", "subject_token_type": "t", "token_url": "u", "service_account_impersonation": {"token_lifetime_seconds": 60}, "credential_source": {"file": "/SECRET"}}"#,
            "token_lifetime_seconds",
        ),
    ];
    for (body, expected) in cases {
        let shown = load_error(body, &none).await;
        assert!(
            shown.contains(expected),
            "{body}: expected {expected:?} in {shown}"
        );
    }
}

#[tokio::test]
async fn a_missing_file_is_an_error_not_a_fall_back() {
    let env = |k: &str| {
        (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| "/nonexistent/key.json".to_string())
    };
    let err = discover(&env, &reqwest::Client::new()).await.err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/key.json") && text.contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{text}"
    );
}

#[tokio::test]
async fn nothing_found_lists_every_source_tried_with_a_hint() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_string_lossy().to_string();
    // A port nobody listens on: the probe is refused at once.
    let env = |k: &str| match k {
        "HOME" => Some(h.clone()),
        "GCE_METADATA_HOST" => Some("127.0.0.1:9".to_string()),
        _ => None,
    };
    let started = Instant::now();
    let err = discover(&env, &reqwest::Client::new()).await.err().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let BqError::Auth { message, hint } = &err else {
        panic!("{err:?}")
    };
    for part in [
        "BQ_BACKFILL_ACCESS_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "application_default_credentials.json",
        "http://127.0.0.1:9",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    let hint = hint.as_deref().unwrap();
    assert!(
        hint.contains("gcloud auth application-default login")
            && hint.contains("BIGQUERY_EMULATOR_HOST"),
        "{hint}"
    );
}

#[tokio::test]
async fn quota_project_comes_from_the_file_unless_the_environment_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adc.json");
    std::fs::write(&path, r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r", "quota_project_id": "billing-proj"}"#).unwrap();
    let p = path.to_string_lossy().to_string();
    let from_file = |k: &str| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| p.clone());
    let c = discover(&from_file, &reqwest::Client::new()).await.unwrap();
    assert_eq!(c.quota_project(), Some("billing-proj"));
    let overridden = |k: &str| match k {
        "GOOGLE_CLOUD_QUOTA_PROJECT" => Some("other".to_string()),
        _ => from_file(k),
    };
    let c = discover(&overridden, &reqwest::Client::new())
        .await
        .unwrap();
    assert_eq!(c.quota_project(), Some("other"));
    assert!(!format!("{c:?}").contains("\"r\""));
}

#[tokio::test]
async fn the_environment_token_comes_first_and_is_never_shown() {
    let env = |k: &str| match k {
        "BQ_BACKFILL_ACCESS_TOKEN" => Some("ya29.SECRET".to_string()),
        "GOOGLE_APPLICATION_CREDENTIALS" => Some("/nonexistent".to_string()),
        _ => None,
    };
    let c = discover(&env, &reqwest::Client::new()).await.unwrap();
    assert!(!format!("{c:?}").contains("SECRET"));
    assert_eq!(c.token().await.unwrap().as_deref(), Some("ya29.SECRET"));
}
