//! HTTP-level tests against a scripted in-process server that answers with
//! canned BigQuery envelopes, one scripted reply per request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use gcp_bigquery_client::model::job_configuration_load::JobConfigurationLoad;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::bq::retry::RetryNotice;

#[derive(Clone)]
enum Reply {
    Json(u16, Value),
    Raw(u16, &'static str, &'static str),
    /// A JSON reply with one extra header line (`name: value`).
    JsonWithHeader(u16, Value, &'static str),
    /// Read the request, then close the connection without answering.
    Close,
    /// Read the request, then never answer.
    Hang,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query_param(&self, key: &str) -> Option<String> {
        let url = Url::parse(&format!("http://x{}", self.target)).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

struct Server {
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(script: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (script2, seen2) = (script.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, script2.clone(), seen2.clone()));
            }
        });
        Server { host, seen, task }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn client(&self) -> BigQuery {
        self.client_with(policy(Duration::from_secs(5)), Duration::from_secs(5))
            .await
    }

    async fn client_with(&self, retry: RetryPolicy, request_timeout: Duration) -> BigQuery {
        BigQuery::connect(ClientConfig {
            endpoint: Endpoint::Emulator {
                host: self.host.clone(),
            },
            project: "proj".to_string(),
            location: Some("EU".to_string()),
            retry,
            request_timeout,
        })
        .await
        .unwrap()
    }
}

async fn serve(
    mut sock: TcpStream,
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    while buf.len() < head_end + length {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    seen.lock().unwrap().push(Seen {
        method,
        target,
        headers,
        body,
    });
    let reply = script.lock().unwrap().pop_front().unwrap_or_else(|| {
        Reply::Json(
            418,
            envelope(418, "testScriptExhausted", "no scripted reply left"),
        )
    });
    let mut extra = String::new();
    let (status, content_type, body) = match reply {
        Reply::Json(status, value) => {
            (status, "application/json; charset=UTF-8", value.to_string())
        }
        Reply::JsonWithHeader(status, value, header) => {
            extra = format!("{header}\r\n");
            (status, "application/json; charset=UTF-8", value.to_string())
        }
        Reply::Raw(status, content_type, body) => (status, content_type, body.to_string()),
        Reply::Close => return,
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(response.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn policy(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        deadline,
        max_attempts: 3,
    }
}

fn envelope(code: u16, reason: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": "X",
        "errors": [{"reason": reason, "message": message, "domain": "global"}]}})
}

fn job(id: &str, job_type: &str, state: &str, extra: Value) -> Value {
    let mut job = json!({
        "kind": "bigquery#job",
        "id": format!("proj:EU.{id}"),
        "jobReference": {"projectId": "proj", "jobId": id, "location": "EU"},
        "configuration": {"jobType": job_type, "labels": {"bq-backfill-job": "orders"}},
        "status": {"state": state},
        "statistics": {"creationTime": "1705287600000", "startTime": "1705287601000"},
    });
    merge(&mut job, extra);
    job
}

fn merge(target: &mut Value, extra: Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, v) in e {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, e) => *t = e,
    }
}

fn table_ref() -> TableRef {
    TableRef {
        project: "proj".into(),
        dataset: "ds".into(),
        table: "t".into(),
    }
}

fn query_config() -> JobSpec {
    JobSpec::Query(QueryJob {
        maximum_bytes_billed: Some(1000),
        ..QueryJob::plain("SELECT 1")
    })
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("bq-backfill-job".to_string(), "orders".to_string())])
}

fn recorder() -> (Arc<Mutex<Vec<RetryNotice>>>, RetryObserver) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    (
        notices,
        Arc::new(move |n: &RetryNotice| sink.lock().unwrap().push(n.clone())),
    )
}

#[tokio::test]
async fn range_partitioning_is_read_with_its_range() {
    let table = json!({
        "tableReference": {"projectId": "proj", "datasetId": "ds", "tableId": "t"},
        "rangePartitioning": {"field": "bucket", "range": {"start": "-20", "end": "100", "interval": "10"}},
        "schema": {"fields": [{"name": "bucket", "type": "INTEGER"}]},
    });
    let server = Server::start(vec![Reply::Json(200, table)]).await;
    let bq = server.client().await;
    let meta = bq.get_table(&table_ref()).await.unwrap().unwrap();
    assert_eq!(meta.time_partitioning, None);
    assert_eq!(
        meta.range_partitioning,
        Some(RangePartitioningMeta {
            field: "bucket".into(),
            start: -20,
            end: 100,
            interval: 10
        })
    );
}

#[tokio::test]
async fn a_503_then_200_is_retried() {
    let table = json!({
        "tableReference": {"projectId": "proj", "datasetId": "ds", "tableId": "t"},
        "timePartitioning": {"type": "DAY", "field": "d"},
        "numRows": "12",
        "schema": {"fields": [{"name": "d", "type": "DATE", "mode": "REQUIRED"}, {"name": "n", "type": "INTEGER"},
            {"name": "r", "type": "RANGE", "rangeElementType": {"type": "DATE"}}]},
    });
    let server = Server::start(vec![
        Reply::Json(503, envelope(503, "backendError", "try again")),
        Reply::Json(200, table),
    ])
    .await;
    let (notices, observer) = recorder();
    let bq = server.client().await.with_retry_observer(observer);
    let meta = bq.get_table(&table_ref()).await.unwrap().unwrap();
    assert_eq!(
        meta.time_partitioning,
        Some(TimePartitioningMeta {
            kind: "DAY".into(),
            field: Some("d".into())
        })
    );
    assert_eq!(meta.range_partitioning, None);
    assert_eq!(meta.num_rows, Some(12));
    assert_eq!(meta.schema[1], ("n".to_string(), "INTEGER".to_string()));
    assert_eq!(meta.schema.len(), 3);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.method, "GET");
        assert_eq!(r.path(), "/bigquery/v2/projects/proj/datasets/ds/tables/t");
        assert_eq!(
            r.header("authorization"),
            None,
            "the emulator gets no credentials"
        );
    }
    let notices = notices.lock().unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(
        (
            notices[0].operation,
            notices[0].attempt,
            notices[0].reason.as_str()
        ),
        ("tables.get", 1, "backendError")
    );
}

#[tokio::test]
async fn invalid_query_fails_at_once_with_bigquerys_message() {
    let message = "Syntax error: Unexpected identifier \"SELEC\" at [1:1]";
    let server = Server::start(vec![Reply::Json(
        400,
        envelope(400, "invalidQuery", message),
    )])
    .await;
    let bq = server.client().await;
    let err = bq
        .query("SELEC 1", &[QueryParam::string("job", "orders")])
        .await
        .unwrap_err();
    match &err {
        BqError::Api {
            status,
            reason,
            message: m,
            attempts,
            operation,
            ..
        } => {
            assert_eq!(
                (*status, reason.as_str(), *attempts, *operation),
                (400, "invalidQuery", 1, "jobs.query")
            );
            assert_eq!(m, message);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains(message) && text.contains("1 attempt in"),
        "{text}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path(), "/bigquery/v2/projects/proj/queries");
    let body = requests[0].json();
    assert_eq!(body["useLegacySql"], json!(false));
    assert_eq!(body["parameterMode"], json!("NAMED"));
    assert_eq!(body["location"], json!("EU"));
    assert_eq!(
        body["queryParameters"],
        json!([{"name": "job", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "orders"}}])
    );
    assert!(body["requestId"].as_str().is_some_and(|id| id.len() == 36));
}

#[tokio::test]
async fn insert_job_conflict_attaches_via_jobs_get() {
    let server = Server::start(vec![
        Reply::Json(
            409,
            envelope(409, "duplicate", "Already Exists: Job proj:EU.job_1"),
        ),
        Reply::Json(200, job("job_1", "QUERY", "RUNNING", json!({}))),
    ])
    .await;
    let bq = server.client().await;
    let outcome = bq
        .insert_job("job_1", &query_config(), &labels())
        .await
        .unwrap();
    let InsertOutcome::Existing(info) = outcome else {
        panic!("expected Existing, got {outcome:?}")
    };
    assert_eq!(info.job_id, "job_1");
    assert_eq!(info.state, JobState::Running);
    assert_eq!(info.labels, labels());
    assert_eq!(info.job_type, "QUERY");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path()),
        ("POST", "/bigquery/v2/projects/proj/jobs")
    );
    assert_eq!(
        (requests[1].method.as_str(), requests[1].path()),
        ("GET", "/bigquery/v2/projects/proj/jobs/job_1")
    );
    assert_eq!(requests[1].query_param("location").as_deref(), Some("EU"));
    let body = requests[0].json();
    assert_eq!(
        body["jobReference"],
        json!({"jobId": "job_1", "projectId": "proj", "location": "EU"})
    );
    assert_eq!(
        body["configuration"]["labels"],
        json!({"bq-backfill-job": "orders"})
    );
    assert_eq!(body["configuration"]["query"]["useLegacySql"], json!(false));
}

#[tokio::test]
async fn insert_job_retries_with_the_same_id_then_attaches() {
    let server = Server::start(vec![
        Reply::Json(
            503,
            envelope(
                503,
                "backendError",
                "Error encountered during execution. Retrying may solve the problem.",
            ),
        ),
        Reply::Json(
            409,
            envelope(409, "duplicate", "Already Exists: Job proj:EU.job_2"),
        ),
        Reply::Json(200, job("job_2", "QUERY", "PENDING", json!({}))),
    ])
    .await;
    let bq = server.client().await;
    let outcome = bq
        .insert_job("job_2", &query_config(), &labels())
        .await
        .unwrap();
    assert!(
        matches!(&outcome, InsertOutcome::Existing(info) if info.state == JobState::Pending),
        "{outcome:?}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[0].body, requests[1].body,
        "the retry must resend the same job"
    );
    assert_eq!(requests[1].json()["jobReference"]["jobId"], json!("job_2"));
}

#[tokio::test]
async fn insert_job_created() {
    let server = Server::start(vec![Reply::Json(
        200,
        job("job_3", "QUERY", "PENDING", json!({})),
    )])
    .await;
    let bq = server.client().await;
    let outcome = bq
        .insert_job("job_3", &query_config(), &labels())
        .await
        .unwrap();
    let InsertOutcome::Created(info) = outcome else {
        panic!("created: {outcome:?}");
    };
    assert_eq!(info.job_id, "job_3");
    assert_eq!(
        info.stats.creation_time.unwrap().to_rfc3339(),
        "2024-01-15T03:00:00+00:00"
    );
}

#[tokio::test]
async fn connection_closed_mid_request_is_retried() {
    let server = Server::start(vec![
        Reply::Close,
        Reply::Json(200, job("j", "LOAD", "DONE", json!({}))),
    ])
    .await;
    let (notices, observer) = recorder();
    let bq = server.client().await.with_retry_observer(observer);
    let info = bq.get_job("j").await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Done);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(notices.lock().unwrap()[0].reason, "transportError");
}

#[tokio::test]
async fn a_429_with_retry_after_waits_as_long_as_the_server_asked() {
    let server = Server::start(vec![
        Reply::JsonWithHeader(
            429,
            envelope(429, "rateLimitExceeded", "Exceeded rate limits"),
            "Retry-After: 1",
        ),
        Reply::Json(200, job("j", "QUERY", "DONE", json!({}))),
    ])
    .await;
    let (notices, observer) = recorder();
    // This client's own backoff is at most 5 ms.
    let bq = server.client().await.with_retry_observer(observer);
    assert!(bq.get_job("j").await.unwrap().is_some());
    let notices = notices.lock().unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].reason, "rateLimitExceeded");
    assert_eq!(notices[0].delay, Duration::from_secs(1));
}

#[test]
fn retry_after_is_delta_seconds_or_an_http_date() {
    let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:58Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
}

#[tokio::test]
async fn non_json_502_is_retried() {
    let server = Server::start(vec![
        Reply::Raw(
            502,
            "text/html",
            "<html><body>502. That's an error.</body></html>",
        ),
        Reply::Json(200, job("j", "COPY", "RUNNING", json!({}))),
    ])
    .await;
    let bq = server.client().await;
    let info = bq.get_job("j").await.unwrap().unwrap();
    assert_eq!(
        (info.job_type.as_str(), info.state),
        ("COPY", JobState::Running)
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn non_json_400_fails_at_once_with_the_body() {
    let server = Server::start(vec![Reply::Raw(400, "text/plain", "bad   request\nbody")]).await;
    let err = server.client().await.get_job("j").await.unwrap_err();
    match &err {
        BqError::Api {
            status: 400,
            reason,
            message,
            attempts: 1,
            ..
        } => {
            assert_eq!(reason, "http400");
            assert_eq!(message, "non-JSON response: bad request body");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_bare_404_is_not_a_missing_table_but_a_wrong_endpoint() {
    // A proxy or a web server at a mistyped --api-endpoint answers 404 with no BigQuery error body.
    let server = Server::start(vec![Reply::Raw(404, "text/plain", "")]).await;
    let err = server
        .client()
        .await
        .get_table(&table_ref())
        .await
        .unwrap_err();
    assert!(!err.is_not_found() && !err.is_transient(), "{err}");
    assert!(err.to_string().contains("may not be BigQuery"), "{err}");
}

#[tokio::test]
async fn get_job_404_is_none() {
    let server = Server::start(vec![Reply::Json(
        404,
        envelope(404, "notFound", "Not found: Job proj:EU.nope"),
    )])
    .await;
    assert_eq!(server.client().await.get_job("nope").await.unwrap(), None);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_hung_request_times_out_and_is_retried() {
    let server = Server::start(vec![
        Reply::Hang,
        Reply::Json(200, job("j", "LOAD", "DONE", json!({}))),
    ])
    .await;
    let (notices, observer) = recorder();
    let bq = server
        .client_with(policy(Duration::from_secs(5)), Duration::from_millis(300))
        .await
        .with_retry_observer(observer);
    assert!(bq.get_job("j").await.unwrap().is_some());
    assert_eq!(notices.lock().unwrap()[0].reason, "timeout");
}

#[tokio::test]
async fn retries_stop_at_the_deadline_and_say_so() {
    let script = vec![Reply::Json(500, envelope(500, "internalError", "oops")); 10_000];
    let server = Server::start(script).await;
    let bq = server
        .client_with(policy(Duration::from_millis(200)), Duration::from_secs(5))
        .await;
    let started = std::time::Instant::now();
    let err = bq.get_job("j").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.is_transient());
    assert!(err.attempts() >= 2, "{err}");
    assert_eq!(err.attempts() as usize, server.requests().len());
    let text = err.to_string();
    assert!(
        text.contains(&format!("{} attempts in", err.attempts())) && text.contains("internalError"),
        "{text}"
    );
}

#[tokio::test]
async fn rate_limit_is_retried_but_quota_is_not() {
    let server = Server::start(vec![
        Reply::Json(
            403,
            envelope(403, "rateLimitExceeded", "Exceeded rate limits"),
        ),
        Reply::Json(200, job("j", "LOAD", "DONE", json!({}))),
        Reply::Json(
            403,
            envelope(403, "quotaExceeded", "Quota exceeded: daily query bytes"),
        ),
    ])
    .await;
    let bq = server.client().await;
    assert!(bq.get_job("j").await.unwrap().is_some());
    let err = bq.get_job("j").await.unwrap_err();
    assert_eq!(
        (
            err.reason(),
            err.attempts(),
            err.is_transient(),
            err.is_permission()
        ),
        ("quotaExceeded", 1, false, false)
    );
    assert!(err.hint().unwrap().starts_with("hint:"));
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn access_denied_is_a_permission_error() {
    let server = Server::start(vec![Reply::Json(
        403,
        envelope(403, "accessDenied", "Access Denied: Table proj:ds.t"),
    )])
    .await;
    let err = server
        .client()
        .await
        .get_table(&table_ref())
        .await
        .unwrap_err();
    assert!(err.is_permission() && !err.is_transient());
    assert!(err.hint().unwrap().contains("roles/bigquery"));
}

#[tokio::test]
async fn waits_for_a_query_job_with_long_polls() {
    let server = Server::start(vec![
        Reply::Json(200, job("q", "QUERY", "RUNNING", json!({}))),
        Reply::Json(
            200,
            json!({"jobComplete": false, "jobReference": {"jobId": "q"}}),
        ),
        Reply::Json(
            200,
            json!({"jobComplete": true, "totalRows": "7", "jobReference": {"jobId": "q"}}),
        ),
        Reply::Json(
            200,
            job(
                "q",
                "QUERY",
                "DONE",
                json!({"statistics": {"endTime": "1705287660000", "totalBytesProcessed": "2048",
                "query": {"totalBytesBilled": "10485760", "statementType": "SELECT"}}}),
            ),
        ),
    ])
    .await;
    let info = server.client().await.wait_for_job("q").await.unwrap();
    assert_eq!(info.state, JobState::Done);
    assert_eq!(info.error, None);
    assert_eq!(info.stats.rows_written, Some(7));
    assert_eq!(info.stats.bytes_processed, Some(2048));
    assert_eq!(info.stats.bytes_billed, Some(10_485_760));
    assert!(info.stats.end_time.unwrap() > info.stats.start_time.unwrap());
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    for poll in &requests[1..3] {
        assert_eq!(poll.path(), "/bigquery/v2/projects/proj/queries/q");
        assert_eq!(poll.query_param("maxResults").as_deref(), Some("0"));
        assert_eq!(poll.query_param("timeoutMs").as_deref(), Some("10000"));
        assert_eq!(poll.query_param("location").as_deref(), Some("EU"));
    }
}

#[tokio::test]
async fn a_failed_query_job_is_returned_not_raised() {
    let server = Server::start(vec![
        Reply::Json(200, job("q", "QUERY", "RUNNING", json!({}))),
        Reply::Json(400, envelope(400, "invalid", "Some rows belong to different partitions rather than destination partition 20240115")),
        Reply::Json(
            200,
            job("q", "QUERY", "DONE", json!({"status": {"errorResult": {"reason": "invalid",
                "message": "Some rows belong to different partitions rather than destination partition 20240115"}}})),
        ),
    ])
    .await;
    let info = server.client().await.wait_for_job("q").await.unwrap();
    let failure = info.error.unwrap();
    assert_eq!(failure.reason, "invalid");
    assert!(failure.message.contains("different partitions"));
    assert_eq!(info.stats.rows_written, None);
}

#[tokio::test]
async fn a_query_job_that_ended_with_backend_error_is_not_polled_until_the_deadline() {
    let server = Server::start(vec![
        Reply::Json(200, job("q", "QUERY", "RUNNING", json!({}))),
        Reply::Json(500, envelope(500, "backendError", "Backend error. Job aborted.")),
        Reply::Json(200, job("q", "QUERY", "DONE", json!({"status": {"errorResult": {"reason": "backendError", "message": "Backend error. Job aborted."}}}))),
    ])
    .await;
    let info = server.client().await.wait_for_job("q").await.unwrap();
    assert_eq!(info.error.unwrap().reason, "backendError");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn waits_for_load_and_copy_jobs_with_jobs_get() {
    let server = Server::start(vec![
        Reply::Json(200, job("l", "LOAD", "RUNNING", json!({}))),
        Reply::Json(
            200,
            job(
                "l",
                "LOAD",
                "DONE",
                json!({"statistics": {"load": {"outputRows": "42"}}}),
            ),
        ),
        Reply::Json(
            200,
            job(
                "c",
                "COPY",
                "DONE",
                json!({"statistics": {"copy": {"copiedRows": "5"}}}),
            ),
        ),
    ])
    .await;
    let bq = server.client().await;
    assert_eq!(
        bq.wait_for_job("l").await.unwrap().stats.rows_written,
        Some(42)
    );
    assert_eq!(
        bq.wait_for_job("c").await.unwrap().stats.rows_written,
        Some(5)
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.path().contains("/jobs/"))
    );
}

#[tokio::test]
async fn wait_for_an_unknown_job_is_not_found() {
    let server = Server::start(vec![Reply::Json(
        404,
        envelope(404, "notFound", "Not found: Job proj:EU.x"),
    )])
    .await;
    let err = server.client().await.wait_for_job("x").await.unwrap_err();
    assert!(err.is_not_found());
}

#[tokio::test]
async fn query_waits_and_reads_every_page() {
    let schema = json!({"fields": [{"name": "partition_id", "type": "STRING"}, {"name": "attempt", "type": "INTEGER"}]});
    let server = Server::start(vec![
        Reply::Json(200, json!({"jobComplete": false, "jobReference": {"projectId": "proj", "jobId": "qq", "location": "EU"}})),
        Reply::Json(
            200,
            json!({"jobComplete": true, "schema": schema, "totalRows": "3", "pageToken": "p2",
                "rows": [{"f": [{"v": "20240101"}, {"v": "1"}]}, {"f": [{"v": "20240102"}, {"v": null}]}]}),
        ),
        Reply::Json(200, json!({"jobComplete": true, "schema": schema, "totalRows": "3", "rows": [{"f": [{"v": "20240103"}, {"v": "2"}]}]})),
    ])
    .await;
    let result = server.client().await.query("SELECT 1", &[]).await.unwrap();
    assert_eq!(result.fields, ["partition_id", "attempt"]);
    assert_eq!(result.rows.len(), 3);
    assert_eq!(result.get(1, "partition_id"), Some("20240102"));
    assert_eq!(result.get(1, "attempt"), None);
    assert_eq!(result.get(2, "attempt"), Some("2"));
    assert_eq!(result.get(0, "nope"), None);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].path(), "/bigquery/v2/projects/proj/queries/qq");
    assert_eq!(requests[1].query_param("pageToken"), None);
    assert_eq!(requests[2].query_param("pageToken").as_deref(), Some("p2"));
}

#[tokio::test]
async fn a_transient_error_reading_the_second_page_of_a_finished_query_is_retried() {
    let schema = json!({"fields": [{"name": "n", "type": "INTEGER"}]});
    let server = Server::start(vec![
        Reply::Json(
            200,
            json!({"jobComplete": true, "schema": schema, "totalRows": "2", "pageToken": "p2",
                "jobReference": {"projectId": "proj", "jobId": "qq", "location": "EU"},
                "rows": [{"f": [{"v": "1"}]}]}),
        ),
        // getQueryResults for page 2 fails; jobs.get shows the query succeeded.
        Reply::Json(503, envelope(503, "backendError", "try again")),
        Reply::Json(200, job("qq", "QUERY", "DONE", json!({}))),
        Reply::Json(200, json!({"jobComplete": true, "schema": schema, "totalRows": "2", "rows": [{"f": [{"v": "2"}]}]})),
    ])
    .await;
    let result = server.client().await.query("SELECT n", &[]).await.unwrap();
    assert_eq!(result.rows.len(), 2);
    assert_eq!(result.get(1, "n"), Some("2"));
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn query_retries_reuse_the_request_id() {
    let server = Server::start(vec![
        Reply::Json(503, envelope(503, "backendError", "later")),
        Reply::Json(200, json!({"jobComplete": true, "jobReference": {"jobId": "q"}, "schema": {"fields": [{"name": "n", "type": "INTEGER"}]},
            "rows": [{"f": [{"v": "1"}]}]})),
    ])
    .await;
    let result = server
        .client()
        .await
        .query("SELECT 1 AS n", &[])
        .await
        .unwrap();
    assert_eq!(result.rows, [[Some("1".to_string())]]);
    let requests = server.requests();
    assert_eq!(
        requests[0].json()["requestId"],
        requests[1].json()["requestId"]
    );
}

#[tokio::test]
async fn insert_rows_sends_insert_ids_and_reports_insert_errors() {
    let server = Server::start(vec![
        Reply::Json(200, json!({"kind": "bigquery#tableDataInsertAllResponse"})),
        Reply::Json(
            200,
            json!({"insertErrors": [
                {"index": 0, "errors": [{"reason": "stopped", "message": ""}]},
                {"index": 1, "errors": [{"reason": "invalid", "message": "no such field: x."}]}]}),
        ),
    ])
    .await;
    let bq = server.client().await;
    let rows = vec![
        ("id-1".to_string(), json!({"job": "orders"})),
        ("id-2".to_string(), json!({"x": 1})),
    ];
    bq.insert_rows(&table_ref(), &rows).await.unwrap();
    let err = bq.insert_rows(&table_ref(), &rows).await.unwrap_err();
    match &err {
        BqError::InsertErrors {
            rows,
            reason,
            message,
            table,
        } => {
            assert_eq!(
                (*rows, reason.as_str(), table.as_str()),
                (2, "invalid", "proj.ds.t")
            );
            assert!(
                message.starts_with("row 1: invalid: no such field: x."),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_transient());
    let requests = server.requests();
    assert_eq!(
        requests[0].path(),
        "/bigquery/v2/projects/proj/datasets/ds/tables/t/insertAll"
    );
    let body = requests[0].json();
    assert_eq!(
        body["rows"],
        json!([{"insertId": "id-1", "json": {"job": "orders"}}, {"insertId": "id-2", "json": {"x": 1}}])
    );
    assert_eq!(
        bq.insert_rows(&table_ref(), &[])
            .await
            .map(|_| server.requests().len())
            .unwrap(),
        2,
        "no rows, no call"
    );
}

#[tokio::test]
async fn create_table_and_dataset() {
    let server = Server::start(vec![
        Reply::Json(200, json!({"kind": "bigquery#table"})),
        Reply::Json(409, envelope(409, "duplicate", "Already Exists: Table proj:ds.t")),
        Reply::Json(200, json!({"kind": "bigquery#dataset"})),
        Reply::Json(409, json!({"error": {"code": 409, "message": "Already Exists: Dataset proj:ds", "status": "ALREADY_EXISTS"}})),
    ])
    .await;
    let bq = server.client().await;
    let spec = NewTable {
        schema: vec![
            FieldSpec {
                name: "job".into(),
                field_type: "STRING".into(),
                mode: "REQUIRED".into(),
            },
            FieldSpec {
                name: "at".into(),
                field_type: "TIMESTAMP".into(),
                mode: String::new(),
            },
            FieldSpec {
                name: "n".into(),
                field_type: "int64".into(),
                mode: "NULLABLE".into(),
            },
        ],
        partition_day_field: Some("at".into()),
        clustering: vec!["job".into()],
        description: Some("audit log".into()),
        view_query: None,
    };
    assert!(bq.create_table(&table_ref(), &spec).await.unwrap());
    assert!(!bq.create_table(&table_ref(), &spec).await.unwrap());
    assert!(bq.create_dataset("proj", "ds").await.unwrap());
    assert!(!bq.create_dataset("proj", "ds").await.unwrap());
    let requests = server.requests();
    assert_eq!(
        requests[0].path(),
        "/bigquery/v2/projects/proj/datasets/ds/tables"
    );
    assert_eq!(
        requests[0].json(),
        json!({
            "tableReference": {"projectId": "proj", "datasetId": "ds", "tableId": "t"},
            "schema": {"fields": [
                {"name": "job", "type": "STRING", "mode": "REQUIRED"},
                {"name": "at", "type": "TIMESTAMP"},
                {"name": "n", "type": "INT64", "mode": "NULLABLE"}]},
            "timePartitioning": {"type": "DAY", "field": "at"},
            "clustering": {"fields": ["job"]},
            "description": "audit log",
        })
    );
    assert_eq!(requests[2].path(), "/bigquery/v2/projects/proj/datasets");
    assert_eq!(
        requests[2].json(),
        json!({"datasetReference": {"projectId": "proj", "datasetId": "ds"}, "location": "EU"})
    );
}

#[tokio::test]
async fn a_view_is_created_with_its_standard_sql_query_and_no_schema() {
    let server = Server::start(vec![Reply::Json(200, json!({"kind": "bigquery#table"}))]).await;
    let bq = server.client().await;
    let spec = NewTable {
        view_query: Some("SELECT 1 AS x".into()),
        ..Default::default()
    };
    assert!(bq.create_table(&table_ref(), &spec).await.unwrap());
    assert_eq!(
        server.requests()[0].json(),
        json!({
            "tableReference": {"projectId": "proj", "datasetId": "ds", "tableId": "t"},
            "view": {"query": "SELECT 1 AS x", "useLegacySql": false},
        })
    );
}

#[tokio::test]
async fn create_table_rejects_unknown_types_without_a_request() {
    let server = Server::start(vec![]).await;
    let spec = NewTable {
        schema: vec![FieldSpec {
            name: "x".into(),
            field_type: "VARCHAR".into(),
            mode: String::new(),
        }],
        ..Default::default()
    };
    let err = server
        .client()
        .await
        .create_table(&table_ref(), &spec)
        .await
        .unwrap_err();
    assert!(matches!(err, BqError::Invalid { .. }), "{err:?}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn cancel_posts_to_the_cancel_path() {
    let server = Server::start(vec![Reply::Json(
        200,
        json!({"kind": "bigquery#jobCancelResponse", "job": {}}),
    )])
    .await;
    server.client().await.cancel_job("job-9").await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path()),
        ("POST", "/bigquery/v2/projects/proj/jobs/job-9/cancel")
    );
    assert_eq!(r.query_param("location").as_deref(), Some("EU"));
}

#[test]
fn endpoint_selection() {
    let none = |_: &str| None;
    let emulator = |k: &str| (k == EMULATOR_HOST_VAR).then(|| "localhost:9050".to_string());
    let blank = |k: &str| (k == EMULATOR_HOST_VAR).then(|| " ".to_string());
    assert_eq!(Endpoint::from_env(None, &none), Endpoint::Google);
    assert_eq!(Endpoint::from_env(Some(""), &blank), Endpoint::Google);
    assert_eq!(
        Endpoint::from_env(None, &emulator),
        Endpoint::Emulator {
            host: "localhost:9050".into()
        }
    );
    assert_eq!(
        Endpoint::from_env(Some("https://bq.example.com/"), &emulator),
        Endpoint::Custom {
            url: "https://bq.example.com/".into()
        }
    );
    assert_eq!(
        Endpoint::Emulator {
            host: "localhost:9050".into()
        }
        .base_url(),
        "http://localhost:9050/bigquery/v2"
    );
    assert_eq!(
        Endpoint::Emulator {
            host: "http://h:1/".into()
        }
        .base_url(),
        "http://h:1/bigquery/v2"
    );
    assert_eq!(
        Endpoint::Custom {
            url: "https://bq.example.com/".into()
        }
        .base_url(),
        "https://bq.example.com/bigquery/v2"
    );
    assert_eq!(
        Endpoint::Custom {
            url: "https://x/bigquery/v2".into()
        }
        .base_url(),
        "https://x/bigquery/v2"
    );
    assert_eq!(
        Endpoint::Google.base_url(),
        "https://bigquery.googleapis.com/bigquery/v2"
    );
    assert!(!Endpoint::Emulator { host: "h:1".into() }.uses_credentials());
    assert!(
        Endpoint::Custom {
            url: "https://x".into()
        }
        .uses_credentials()
            && Endpoint::Google.uses_credentials()
    );
}

#[tokio::test]
async fn a_bad_endpoint_is_rejected_at_connect() {
    let err = BigQuery::connect(ClientConfig {
        endpoint: Endpoint::Custom {
            url: "not a url".into(),
        },
        project: "p".into(),
        location: None,
        retry: RetryPolicy::default(),
        request_timeout: Duration::from_secs(1),
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, BqError::Invalid { .. }) && err.to_string().contains("hint:"),
        "{err}"
    );
}

#[test]
fn job_model_serializes_without_nulls_and_with_int64_strings() {
    let load = JobConfiguration {
        load: Some(JobConfigurationLoad {
            source_uris: Some(vec!["gs://b/2024-01-15/*.json".into()]),
            source_format: Some("NEWLINE_DELIMITED_JSON".into()),
            write_disposition: Some("WRITE_TRUNCATE".into()),
            destination_table: Some(TableReference::new("proj", "ds", "t$20240115")),
            ..Default::default()
        }),
        ..Default::default()
    };
    let job = serde_json::to_value(job_model("j1", "proj", None, load, &labels())).unwrap();
    assert_eq!(
        job,
        json!({
            "configuration": {
                "load": {
                    "sourceUris": ["gs://b/2024-01-15/*.json"],
                    "sourceFormat": "NEWLINE_DELIMITED_JSON",
                    "writeDisposition": "WRITE_TRUNCATE",
                    "destinationTable": {"projectId": "proj", "datasetId": "ds", "tableId": "t$20240115"},
                },
                "labels": {"bq-backfill-job": "orders"},
            },
            "jobReference": {"jobId": "j1", "projectId": "proj"},
        })
    );
    let query = serde_json::to_value(job_model(
        "j2",
        "proj",
        Some("EU"),
        query_config().to_model(),
        &BTreeMap::new(),
    ))
    .unwrap();
    // GoogleSQL always: the API's default is legacy SQL.
    assert_eq!(
        query["configuration"],
        json!({"jobType": "QUERY", "query": {"query": "SELECT 1", "maximumBytesBilled": "1000", "useLegacySql": false, "priority": "INTERACTIVE"}})
    );
}

#[test]
fn query_params_use_bigquerys_text_forms() {
    let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2024, 1, 15, 3, 4, 5).unwrap();
    let day = NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
    let params = [
        QueryParam::timestamp("t", at),
        QueryParam::date("d", day),
        QueryParam::int64("i", -5),
        QueryParam::bool("b", true),
        QueryParam::null("n", "STRING"),
    ];
    let json =
        serde_json::to_value(params.iter().map(QueryParam::to_model).collect::<Vec<_>>()).unwrap();
    assert_eq!(
        json,
        json!([
            {"name": "t", "parameterType": {"type": "TIMESTAMP"}, "parameterValue": {"value": "2024-01-15 03:04:05.000000+00:00"}},
            {"name": "d", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2024-01-15"}},
            {"name": "i", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "-5"}},
            {"name": "b", "parameterType": {"type": "BOOL"}, "parameterValue": {"value": "true"}},
            {"name": "n", "parameterType": {"type": "STRING"}, "parameterValue": {}},
        ])
    );
}

#[test]
fn job_resources_decode_tolerantly() {
    // Numbers instead of strings, unknown fields, no jobType: still readable.
    let raw = json!({"jobReference": {"jobId": "x"}, "configuration": {"copy": {"sourceTable": {}}, "somethingNew": [1]},
        "status": {"state": "DONE", "errors": [{"reason": "warning"}]},
        "statistics": {"creationTime": 1705287600000_i64, "copy": {"copiedRows": 3}, "reservationUsage": "weird"}});
    let info = serde_json::from_value::<wire::Job>(raw)
        .unwrap()
        .into_info("fallback")
        .unwrap();
    assert_eq!(
        (info.job_id.as_str(), info.job_type.as_str(), info.state),
        ("x", "COPY", JobState::Done)
    );
    assert_eq!(
        info.error, None,
        "status.errors alone does not mean failure"
    );
    assert_eq!(info.stats.rows_written, Some(3));
    let unknown = json!({"status": {"state": "EXPLODED"}});
    assert!(
        serde_json::from_value::<wire::Job>(unknown)
            .unwrap()
            .into_info("y")
            .is_err()
    );
}

#[tokio::test]
async fn debug_output_shows_no_credentials_and_futures_are_send() {
    let server = Server::start(vec![]).await;
    let bq = server.client().await;
    let shown = format!("{bq:?}");
    assert!(
        shown.contains("Credentials::None") && shown.contains("proj"),
        "{shown}"
    );
    fn assert_send<T: Send>(_: T) {}
    assert_send(bq.wait_for_job("j"));
    assert_send(bq.query("SELECT 1", &[]));
    assert_send(bq.insert_job("j", &query_config(), &BTreeMap::new()));
}

#[test]
fn load_and_copy_polls_overshoot_a_job_by_at_most_100_ms_or_5_percent() {
    // Poll times for a job that ends at `end`: the first poll at or after it is when it is seen.
    let seen = |end: Duration| {
        let mut t = Duration::ZERO;
        let mut calls = 0;
        while t < end {
            t += job_poll_delay(t);
            calls += 1;
        }
        (t, calls)
    };
    let (at, calls) = seen(Duration::from_secs(2));
    assert!(at <= Duration::from_millis(2100), "{at:?}");
    assert!(calls <= 21, "{calls}");
    let (at, calls) = seen(Duration::from_secs(600));
    assert!(at <= Duration::from_secs(630), "{at:?}");
    assert!(calls <= 210, "{calls}");
    assert_eq!(job_poll_delay(Duration::from_secs(3600)), POLL_MAX);
}
