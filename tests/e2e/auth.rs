//! Every credential flow of Google's chain, through the real binary, against
//! local stand-ins for Google's token endpoints: the key files and the
//! external-account file carry their own token URLs, and the metadata server
//! is found through `GCE_METADATA_HOST`, so all of them point at 127.0.0.1.
//! Each test ends with the emulator having seen the expected bearer token on
//! every BigQuery request, and no secret in the binary's output.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bq_emulator::{Config, demo};
use serde_json::{Value, json};

use crate::harness::{AUDIT, BIN, Env, RunResult, wait};

const SA_EMAIL: &str = "backfill@proj.iam.gserviceaccount.com";
const KEY_PEM: &str = include_str!("../fixtures/throwaway-service-account-key.pem");
const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/gh/providers/repo";
const OIDC_REQUEST_TOKEN: &str = "gh-oidc-request-SECRET";
const SUBJECT_TOKEN: &str = "oidc-subject-SECRET";
const REFRESH_TOKEN: &str = "user-refresh-SECRET";
const CLIENT_SECRET: &str = "client-SECRET";

/// A stand-in for Google's OAuth, STS, IAM credentials, OIDC and metadata
/// endpoints. It checks what it is sent and issues numbered tokens.
struct FakeGoogle {
    base: String,
    state: Arc<Fake>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Fake {
    base: String,
    lifetime_s: u64,
    /// The service account's public key (RSAPublicKey DER), to verify JWT assertions.
    public_key: Vec<u8>,
    issued: Mutex<Vec<String>>,
    /// What each endpoint was asked, in order ("sts", "iam", ...).
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn issue(&self, kind: &str) -> String {
        let mut issued = self.issued.lock().unwrap();
        let token = format!("{kind}-{}", issued.len() + 1);
        issued.push(token.clone());
        token
    }

    fn called(&self, what: &str) {
        self.calls.lock().unwrap().push(what.to_string());
    }

    fn oauth(&self, kind: &str) -> Response {
        Json(json!({"access_token": self.issue(kind), "expires_in": self.lifetime_s, "token_type": "Bearer"}))
            .into_response()
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        Json(json!({"error": "invalid_grant", "error_description": why})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

impl FakeGoogle {
    async fn start(lifetime_s: u64) -> FakeGoogle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let der = pem_to_der(KEY_PEM);
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("a PKCS#8 RSA key");
        let public_key = ring::signature::KeyPair::public_key(&pair)
            .as_ref()
            .to_vec();
        let state = Arc::new(Fake {
            base: base.clone(),
            lifetime_s,
            public_key,
            issued: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/sts", post(sts))
            .route("/iam/{*rest}", post(iam))
            .route("/oidc", get(oidc))
            .route("/", get(metadata_root))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(metadata_token),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGoogle { base, state, task }
    }

    fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    fn calls(&self) -> Vec<String> {
        self.state.calls.lock().unwrap().clone()
    }

    fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    fn impersonation_url(&self) -> String {
        format!(
            "{}/iam/v1/projects/-/serviceAccounts/{SA_EMAIL}:generateAccessToken",
            self.base
        )
    }
}

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// OAuth token endpoint: the service-account JWT bearer grant and the refresh-token grant.
async fn token(State(f): State<Arc<Fake>>, Form(form): Form<HashMap<String, String>>) -> Response {
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            f.called("token:jwt");
            match verify_assertion(&f, form.get("assertion").map(String::as_str).unwrap_or("")) {
                // Only a cloud-platform token may call IAM (see `iam`).
                Ok(scope) if scope.contains(CLOUD_PLATFORM) => f.oauth("sa_cp"),
                Ok(_) => f.oauth("sa"),
                Err(why) => refuse(StatusCode::BAD_REQUEST, &why),
            }
        }
        Some("refresh_token") => {
            f.called("token:refresh");
            let ok = form.get("client_id").map(String::as_str) == Some("client-id")
                && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
                && form.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN);
            if ok {
                f.oauth("user")
            } else {
                refuse(StatusCode::BAD_REQUEST, "Bad Request")
            }
        }
        _ => refuse(StatusCode::BAD_REQUEST, "unsupported grant_type"),
    }
}

/// The JWT's RS256 signature against the throwaway key, and its claims.
fn verify_assertion(f: &Fake, jwt: &str) -> Result<String, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("not a JWT".into());
    };
    // yup-oauth2 pads its base64url segments, which Google's endpoint accepts.
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| format!("bad base64url: {e}"))
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &f.public_key,
    );
    key.verify(format!("{header}.{claims}").as_bytes(), &decode(signature)?)
        .map_err(|_| "bad signature".to_string())?;
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    let checks = [
        (header["alg"] == "RS256", "alg"),
        (claims["iss"] == SA_EMAIL, "iss"),
        (claims["aud"] == format!("{}/token", f.base), "aud"),
        (
            claims["scope"].as_str().is_some_and(|s| {
                s.contains("https://www.googleapis.com/auth/bigquery") || s.contains(CLOUD_PLATFORM)
            }),
            "scope",
        ),
        ((now - 300..=now + 60).contains(&iat), "iat"),
        (exp > now && exp - iat <= 3600, "exp"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, claim)) => Err(format!("bad {claim} in {claims}")),
        None => Ok(claims["scope"].as_str().unwrap_or_default().to_string()),
    }
}

/// Google's Security Token Service: a token exchange of the OIDC subject token.
async fn sts(State(f): State<Arc<Fake>>, Form(form): Form<HashMap<String, String>>) -> Response {
    f.called("sts");
    let get = |k: &str| form.get(k).map(String::as_str);
    let ok = get("grant_type") == Some("urn:ietf:params:oauth:grant-type:token-exchange")
        && get("audience") == Some(AUDIENCE)
        && get("subject_token") == Some(SUBJECT_TOKEN)
        && get("subject_token_type") == Some("urn:ietf:params:oauth:token-type:jwt")
        && get("requested_token_type") == Some("urn:ietf:params:oauth:token-type:access_token");
    if ok {
        f.oauth("federated")
    } else {
        refuse(StatusCode::BAD_REQUEST, "The subject token is invalid")
    }
}

/// IAM credentials `generateAccessToken`, authorised by the federated or user token.
async fn iam(
    State(f): State<Arc<Fake>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    f.called("iam");
    let caller_ok = bearer(&headers).is_some_and(|t| {
        // A service account's token only with the cloud-platform scope, as IAM requires.
        (t.starts_with("federated-") || t.starts_with("user-") || t.starts_with("sa_cp-"))
            && f.issued.lock().unwrap().iter().any(|i| i == t)
    });
    if rest != format!("v1/projects/-/serviceAccounts/{SA_EMAIL}:generateAccessToken") || !caller_ok
    {
        return (StatusCode::FORBIDDEN, Json(json!({"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied"}}))).into_response();
    }
    let scope_ok = body["scope"].as_array().is_some_and(|s| {
        s.iter()
            .any(|v| v == "https://www.googleapis.com/auth/bigquery")
    });
    if !scope_ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "no bigquery scope"}})),
        )
            .into_response();
    }
    let expire = chrono::Utc::now() + chrono::Duration::seconds(f.lifetime_s as i64);
    Json(json!({"accessToken": f.issue("impersonated"), "expireTime": expire.to_rfc3339()}))
        .into_response()
}

/// GitHub's OIDC token URL: answers only with the request token as bearer.
async fn oidc(State(f): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    f.called("oidc");
    if bearer(&headers) != Some(OIDC_REQUEST_TOKEN) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({"count": 1, "value": SUBJECT_TOKEN})).into_response()
}

fn metadata_flavored(headers: &HeaderMap) -> bool {
    headers
        .get("metadata-flavor")
        .is_some_and(|v| v == "Google")
}

async fn metadata_root(headers: HeaderMap) -> Response {
    if !metadata_flavored(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    ([("Metadata-Flavor", "Google")], "computeMetadata/\n").into_response()
}

async fn metadata_token(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    f.called("metadata");
    let scoped = q
        .get("scopes")
        .is_some_and(|s| s.contains("https://www.googleapis.com/auth/bigquery"));
    if !metadata_flavored(&headers) || !scoped {
        return StatusCode::FORBIDDEN.into_response();
    }
    f.oauth("metadata")
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

/// A hermetic environment for the binary: no emulator variable, an empty
/// HOME (no gcloud file), the metadata check off unless a test turns it on.
struct Run<'a> {
    env: &'a Env,
    vars: BTreeMap<String, String>,
    args: Vec<String>,
    home: tempfile::TempDir,
}

impl<'a> Run<'a> {
    fn new(env: &'a Env) -> Run<'a> {
        let home = tempfile::tempdir().unwrap();
        let mut vars = BTreeMap::new();
        vars.insert(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        );
        vars.insert(
            "HOME".to_string(),
            home.path().to_string_lossy().to_string(),
        );
        vars.insert("NO_GCE_CHECK".to_string(), "true".to_string());
        vars.insert("RUST_LOG".to_string(), "info".to_string());
        let args = vec![
            "run".to_string(),
            "--api-endpoint".to_string(),
            env.emu.base_url(),
        ];
        Run {
            env,
            vars,
            args,
            home,
        }
    }

    fn var(mut self, k: &str, v: &str) -> Self {
        self.vars.insert(k.to_string(), v.to_string());
        self
    }

    fn no_var(mut self, k: &str) -> Self {
        self.vars.remove(k);
        self
    }

    fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Writes `value` as a credentials file in HOME and names it in GOOGLE_APPLICATION_CREDENTIALS.
    fn credentials(self, value: &Value) -> Self {
        let path = self.home.path().join("credentials.json");
        std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
        let p = path.to_string_lossy().to_string();
        self.var("GOOGLE_APPLICATION_CREDENTIALS", &p)
    }

    fn run(&self, descriptor: &Value) -> RunResult {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .envs(&self.vars)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("binary starts");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&serde_json::to_vec(descriptor).unwrap())
            .unwrap();
        let _ = self.env;
        wait(child)
    }
}

fn three_days(env: &Env) -> Value {
    env.descriptor("2024-01-01", "2024-01-04", json!({}))
}

/// Runs three partitions and checks the emulator saw only tokens with
/// `prefix` issued by `fake`, on every request, and no secret was printed.
fn assert_backfilled_with(env: &Env, fake: &FakeGoogle, r: &RunResult, prefix: &str) {
    assert_eq!(r.code, 0, "run succeeds\n{}", r.stderr);
    assert_eq!(r.finished()["succeeded"], 3, "{}", r.stdout);
    assert_eq!(
        env.latest_status()
            .values()
            .filter(|s| *s == "SUCCEEDED")
            .count(),
        3
    );
    let issued = fake.issued();
    let stats = env.emu.stats();
    let total: u64 = stats.requests.values().sum();
    let mut used = 0;
    for (header, n) in &stats.authorization {
        let token = header
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("a request without a bearer token: {header:?} ×{n}"));
        assert!(
            token.starts_with(prefix) && issued.iter().any(|i| i == token),
            "{token} was not issued as {prefix}-*: {issued:?}"
        );
        used += n;
    }
    assert_eq!(
        used, total,
        "every BigQuery request carried a token: {:?}",
        stats.authorization
    );
    assert_no_secret(r, &issued);
}

fn assert_no_secret(r: &RunResult, issued: &[String]) {
    let out = format!("{}\n{}", r.stdout, r.stderr);
    let key_line = KEY_PEM.lines().nth(5).unwrap();
    for secret in issued.iter().map(String::as_str).chain([
        SUBJECT_TOKEN,
        REFRESH_TOKEN,
        CLIENT_SECRET,
        OIDC_REQUEST_TOKEN,
        key_line,
    ]) {
        assert!(
            !out.contains(secret),
            "output shows a secret ({secret}):\n{out}"
        );
    }
    assert!(!out.contains("SECRET"), "output shows a secret:\n{out}");
}

/// The demo seeded for three days; counters reset so only the binary's requests count.
async fn demo() -> Env {
    let env = Env::demo("2024-01-01", "2024-01-04").await;
    env.emu.reset_stats();
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_signs_a_jwt_for_its_token_uri() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let key = json!({
        "type": "service_account", "project_id": "proj", "private_key_id": "k1",
        "private_key": KEY_PEM, "client_email": SA_EMAIL, "client_id": "1",
        "token_uri": format!("{}/token", fake.base),
    });
    // At the most verbose level, so that no dependency's debug line can show a token either.
    let r = Run::new(&env)
        .credentials(&key)
        .var("RUST_LOG", "trace")
        .run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "sa");
    assert!(
        fake.calls().contains(&"token:jwt".to_string()),
        "{:?}",
        fake.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_application_default_credentials_refresh_a_user_token_and_bill_the_quota_project() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let run = Run::new(&env);
    let gcloud = run.home.path().join(".config/gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    let adc = json!({
        "type": "authorized_user", "client_id": "client-id", "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN, "quota_project_id": "billing-project",
        "token_uri": format!("{}/token", fake.base),
    });
    std::fs::write(
        gcloud.join("application_default_credentials.json"),
        adc.to_string(),
    )
    .unwrap();
    let r = run.run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "user");
    let projects = env.emu.stats().user_project;
    assert_eq!(
        projects.keys().collect::<Vec<_>>(),
        vec!["billing-project"],
        "x-goog-user-project on every request"
    );
}

/// The file google-github-actions/auth writes for Workload Identity Federation.
fn github_actions_file(fake: &FakeGoogle, impersonate: bool) -> Value {
    let mut file = json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/sts", fake.base),
        "credential_source": {
            "url": format!("{}/oidc?audience=https://iam.googleapis.com{AUDIENCE}", fake.base),
            "headers": {"Authorization": format!("Bearer {OIDC_REQUEST_TOKEN}")},
            "format": {"type": "json", "subject_token_field_name": "value"}
        },
        "universe_domain": "googleapis.com"
    });
    if impersonate {
        file["service_account_impersonation_url"] = json!(fake.impersonation_url());
        // As gcloud writes it without --service-account-token-lifetime-seconds: the default hour.
        file["service_account_impersonation"] = json!({});
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_federation_from_github_actions_with_impersonation() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let r = Run::new(&env)
        .credentials(&github_actions_file(&fake, true))
        .var("RUST_LOG", "trace")
        .run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "impersonated");
    assert_eq!(
        fake.calls()[..3],
        ["oidc", "sts", "iam"],
        "subject token, exchange, impersonation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_federation_without_impersonation_uses_the_federated_token() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let r = Run::new(&env)
        .credentials(&github_actions_file(&fake, false))
        .run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "federated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_executable_sourced_subject_tokens() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let run = Run::new(&env);
    let token_file = run.home.path().join("oidc-token");
    std::fs::write(&token_file, format!("{SUBJECT_TOKEN}\n")).unwrap();
    let mut file = github_actions_file(&fake, false);
    file["credential_source"] = json!({"file": token_file});
    let r = run.credentials(&file).run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "federated");

    let env = demo().await;
    let run = Run::new(&env);
    let script = run.home.path().join("token.sh");
    let answer = json!({"version": 1, "success": true, "token_type": "urn:ietf:params:oauth:token-type:jwt",
        "id_token": SUBJECT_TOKEN, "expiration_time": chrono::Utc::now().timestamp() + 3600});
    std::fs::write(&script, format!("#!/bin/sh\ntest \"$GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE\" = '{AUDIENCE}' || exit 3\necho '{answer}'\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    file["credential_source"] = json!({"executable": {"command": script, "timeout_millis": 5000}});
    let refused = Run::new(&env).credentials(&file).run(&three_days(&env));
    assert_eq!(
        refused.code, 77,
        "executables need the opt-in: {}",
        refused.stdout
    );
    assert!(
        refused.finished()["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES")
    );
    let r = run
        .var("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
        .credentials(&file)
        .run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "federated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impersonated_service_account_file_exchanges_its_source_token() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let file = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": fake.impersonation_url(),
        "delegates": [],
        "source_credentials": {
            "type": "authorized_user", "client_id": "client-id", "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN, "token_uri": format!("{}/token", fake.base)
        }
    });
    let r = Run::new(&env).credentials(&file).run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "impersonated");
}

/// A service-account key as the source: its JWT asks for cloud-platform
/// (IAM refuses a BigQuery-only token), the impersonated token for BigQuery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impersonated_service_account_from_a_key_asks_iam_with_a_cloud_platform_token() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let file = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": fake.impersonation_url(),
        "source_credentials": {
            "type": "service_account", "project_id": "proj", "private_key_id": "k1",
            "private_key": KEY_PEM, "client_email": SA_EMAIL, "client_id": "1",
            "token_uri": format!("{}/token", fake.base),
        }
    });
    let r = Run::new(&env).credentials(&file).run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "impersonated");
    assert!(
        fake.issued().iter().any(|t| t.starts_with("sa_cp-")),
        "{:?}",
        fake.issued()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_server_is_found_through_gce_metadata_host() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let r = Run::new(&env)
        .no_var("NO_GCE_CHECK")
        .var("GCE_METADATA_HOST", &fake.host())
        .run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_during_a_long_run() {
    let config = Config {
        job_delay: Duration::from_millis(1500),
        ..Config::default()
    };
    let env = Env::with_config(config, "2024-01-01", "2024-01-04").await;
    env.emu.reset_stats();
    let fake = FakeGoogle::start(5).await;
    let started = Instant::now();
    let r = Run::new(&env)
        .no_var("NO_GCE_CHECK")
        .var("GCE_METADATA_HOST", &fake.host())
        .run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "metadata");
    let used = env.emu.stats().authorization.len() as u64;
    // A 5 s token is replaced after 3.75 s, so a run of T seconds uses at least T / 5 of them.
    let floor = started.elapsed().as_secs() / 5;
    assert!(
        used >= 2 && used >= floor,
        "{used} tokens in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_in_the_environment_is_the_escape_hatch() {
    let env = demo().await;
    let r = Run::new(&env)
        .var("BQ_BACKFILL_ACCESS_TOKEN", "ya29.handed-in")
        .run(&three_days(&env));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let auth = env.emu.stats().authorization;
    assert_eq!(
        auth.keys().collect::<Vec<_>>(),
        vec!["Bearer ya29.handed-in"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_anywhere_fails_fast_naming_each_source_and_writes_nothing() {
    let env = demo().await;
    let started = Instant::now();
    // The metadata probe is on, at a port where nothing listens.
    let r = Run::new(&env)
        .no_var("NO_GCE_CHECK")
        .var("GCE_METADATA_HOST", "127.0.0.1:9")
        .run(&three_days(&env));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r.code, 77, "{}", r.stdout);
    let error = &r.finished()["error"];
    let message = error["message"].as_str().unwrap();
    for source in [
        "BQ_BACKFILL_ACCESS_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "application_default_credentials.json",
        "metadata server",
    ] {
        assert!(message.contains(source), "{source} in {message}");
    }
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("gcloud auth application-default login"),
        "{error}"
    );
    assert_eq!(
        env.emu.stats().requests.values().sum::<u64>(),
        0,
        "nothing reached BigQuery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_refusing_the_credentials_is_exit_77_with_its_reason() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let adc = json!({
        "type": "authorized_user", "client_id": "client-id", "client_secret": "wrong-SECRET",
        "refresh_token": REFRESH_TOKEN, "token_uri": format!("{}/token", fake.base),
    });
    let r = Run::new(&env).credentials(&adc).run(&three_days(&env));
    assert_eq!(r.code, 77, "{}", r.stdout);
    let message = r.finished()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("invalid_grant") && message.contains("/token"),
        "{message}"
    );
    assert_no_secret(&r, &fake.issued());
    let audit = env.emu.read_rows(demo::PROJECT, demo::OPS_DATASET, AUDIT);
    assert!(
        audit.map(|rows| rows.is_empty()).unwrap_or(true),
        "nothing written"
    );
}

/// BigQuery refusing a token that should still be good (revoked, or expired
/// early): the cached token is dropped and the call tried once more with a
/// new one; a token handed in through the environment cannot be replaced,
/// so it is exit 77 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_replaced_once_unless_it_came_from_the_environment() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let adc = json!({
        "type": "authorized_user", "client_id": "client-id", "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN, "token_uri": format!("{}/token", fake.base),
    });
    env.emu
        .faults()
        .fail_next("tables.get", 1, 401, "authError");
    let r = Run::new(&env).credentials(&adc).run(&three_days(&env));
    assert_backfilled_with(&env, &fake, &r, "user");
    let refreshes = fake
        .calls()
        .iter()
        .filter(|c| *c == "token:refresh")
        .count();
    assert_eq!(
        refreshes,
        2,
        "one new token after the 401: {:?}",
        fake.calls()
    );

    let env = demo().await;
    env.emu
        .faults()
        .fail_next("tables.get", 1, 401, "authError");
    let r = Run::new(&env)
        .var("BQ_BACKFILL_ACCESS_TOKEN", "ya29.handed-in")
        .run(&three_days(&env));
    assert_eq!(r.code, 77, "{}", r.stdout);
    assert_eq!(env.stat("tables.get"), 1, "not retried");
}

/// A text-format subject token URL that refuses (here without the OIDC
/// request token) is an authentication failure naming the URL, not an
/// unreachable endpoint retried for a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_token_url_refusing_the_request_is_exit_77_naming_it() {
    let env = demo().await;
    let fake = FakeGoogle::start(3600).await;
    let mut file = github_actions_file(&fake, false);
    file["credential_source"] = json!({
        "url": format!("{}/oidc?audience=x", fake.base),
        "format": {"type": "text"}
    });
    let r = Run::new(&env).credentials(&file).run(&three_days(&env));
    assert_eq!(r.code, 77, "{}", r.stdout);
    let message = r.finished()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("subject token URL") && message.contains("/oidc"),
        "{message}"
    );
    assert!(
        r.elapsed < std::time::Duration::from_secs(10),
        "{:?}",
        r.elapsed
    );
    assert_eq!(env.stat("jobs.insert"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_refusing_connections_fails_fast_naming_the_url() {
    let env = demo().await;
    for command in ["run", "plan", "status"] {
        let started = Instant::now();
        let r = Run::new(&env)
            .var("BQ_BACKFILL_ACCESS_TOKEN", "ya29.x")
            .args(&[command, "--api-endpoint", "http://127.0.0.1:9"])
            .run(&three_days(&env));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(15), "{command} took {took:?}");
        assert_eq!(r.code, 69, "{command}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("http://127.0.0.1:9"),
            "{command} names the URL: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("retrying"),
            "{command} says what it is waiting for: {}",
            r.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_is_reported_while_waiting_then_fails() {
    let env = demo().await;
    // Accepts connections and reads nothing: a firewall that swallows packets, a stuck proxy.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let conns: Vec<_> = listener.incoming().take(3).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(conns);
    });
    let started = Instant::now();
    let r = Run::new(&env)
        .var("BQ_BACKFILL_ACCESS_TOKEN", "ya29.x")
        .args(&["plan", "--api-endpoint", &url])
        .run(&three_days(&env));
    let took = started.elapsed();
    assert_eq!(r.code, 69, "{}\n{}", r.stdout, r.stderr);
    assert!(took < Duration::from_secs(25), "took {took:?}");
    assert!(
        r.stderr.contains("still waiting for bigquery tables.get"),
        "says what it waits for: {}",
        r.stderr
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_token_endpoint_fails_fast_with_its_own_hint() {
    let env = demo().await;
    let key = json!({
        "type": "service_account", "private_key": KEY_PEM, "client_email": SA_EMAIL,
        "token_uri": "http://127.0.0.1:9/token",
    });
    let started = Instant::now();
    let r = Run::new(&env).credentials(&key).run(&three_days(&env));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r.code, 69, "{}", r.stdout);
    let error = &r.finished()["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the token endpoint of credentials file"),
        "{error}"
    );
    assert!(
        error["hint"].as_str().unwrap().contains("token_uri"),
        "{error}"
    );
    assert_eq!(env.emu.stats().requests.values().sum::<u64>(), 0);
}
