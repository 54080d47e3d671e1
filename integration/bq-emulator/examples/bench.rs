//! Load generator for `integration/bench/run.sh`: measures how fast `bq-emulator serve` starts and how many
//! simple REST requests (`tables.get`, `jobs.get`) it answers per second on loopback.
//!
//! ```text
//! bench startup --bin target/release/bq-emulator --runs 15
//! bench load --bin target/release/bq-emulator --requests 20000 --concurrency 8
//! ```
//! Output is one `key=value` line per figure, for the shell script to tabulate.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

const PROJECT: &str = "bench-project";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const WARMUP_REQUESTS: u64 = 200;

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(
        "cannot start {bin}: {source}; hint: build it with `cargo build --release -p bq-emulator`"
    )]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("emulator printed no `listening on` line within {0:?}")]
    NotReady(Duration),
    #[error("request {what} failed: {detail}")]
    Request { what: String, detail: String },
    #[error("{failed} of {total} benchmark requests failed; first: {first}")]
    Failures {
        failed: u64,
        total: u64,
        first: String,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Parser)]
#[command(about = "Start-up and throughput benchmark of bq-emulator")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Spawn the emulator repeatedly and time spawn -> `listening on`.
    Startup {
        #[arg(long)]
        bin: PathBuf,
        #[arg(long, default_value_t = 15)]
        runs: usize,
    },
    /// Fire a fixed number of tables.get / jobs.get requests over concurrent keep-alive connections.
    Load {
        #[arg(long)]
        bin: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

/// The emulator child process; killed when dropped so a failed run leaves nothing behind.
struct Server {
    child: Child,
    base_url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Spawns `bin serve` and returns once it printed its `listening on` line, with the time that took.
fn start(bin: &Path) -> Result<(Server, Duration), BenchError> {
    let port = free_port()?;
    let began = Instant::now();
    let mut child = Command::new(bin)
        .args(["serve", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            bin: bin.to_path_buf(),
            source,
        })?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    // Keeps draining stderr after start-up: a server blocked on a full log pipe would be measured as slow.
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        let mut sent = false;
        while !sent {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        let _ = tx.send((Instant::now(), addr.trim().to_string()));
                        sent = true;
                    }
                }
            }
        }
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let mut server = Server {
        child,
        base_url: String::new(),
    };
    let (ready_at, addr) = rx
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| BenchError::NotReady(READY_TIMEOUT))?;
    server.base_url = format!("http://{addr}");
    Ok((server, ready_at - began))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn startup(bin: &Path, runs: usize) -> Result<Vec<(String, String)>, BenchError> {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (server, took) = start(bin)?;
        drop(server);
        ms.push(took.as_secs_f64() * 1e3);
    }
    let runs_text = ms
        .iter()
        .map(|m| format!("{m:.1}"))
        .collect::<Vec<_>>()
        .join(",");
    ms.sort_by(f64::total_cmp);
    Ok(vec![
        ("startup_runs".into(), runs.to_string()),
        ("startup_ms_each".into(), runs_text),
        ("startup_min_ms".into(), format!("{:.1}", ms[0])),
        (
            "startup_median_ms".into(),
            format!("{:.1}", percentile(&ms, 50.0)),
        ),
        ("startup_max_ms".into(), format!("{:.1}", ms[ms.len() - 1])),
    ])
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, BenchError> {
    let what = format!("{method} {url}");
    let mut req = http.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.map_err(|e| BenchError::Request {
        what: what.clone(),
        detail: e.to_string(),
    })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| BenchError::Request {
        what: what.clone(),
        detail: e.to_string(),
    })?;
    if !status.is_success() {
        return Err(BenchError::Request {
            what,
            detail: format!("HTTP {status}: {text}"),
        });
    }
    serde_json::from_str(&text).map_err(|e| BenchError::Request {
        what,
        detail: format!("bad JSON ({e}): {text}"),
    })
}

/// Creates the dataset, a day-partitioned table and a finished query job; returns the two URLs to hammer.
async fn prepare(base: &str) -> Result<[String; 2], BenchError> {
    let http = reqwest::Client::new();
    let api = format!("{base}/bigquery/v2/projects/{PROJECT}");
    let post = reqwest::Method::POST;
    call(
        &http,
        post.clone(),
        &format!("{api}/datasets"),
        Some(json!({
            "datasetReference": {"projectId": PROJECT, "datasetId": "bench"}
        })),
    )
    .await?;
    call(
        &http,
        post.clone(),
        &format!("{api}/datasets/bench/tables"),
        Some(json!({
            "tableReference": {"projectId": PROJECT, "datasetId": "bench", "tableId": "events"},
            "schema": {"fields": [
                {"name": "day", "type": "DATE"}, {"name": "user", "type": "STRING"}, {"name": "n", "type": "INT64"}
            ]},
            "timePartitioning": {"type": "DAY", "field": "day"}
        })),
    )
    .await?;
    call(
        &http,
        post,
        &format!("{api}/jobs"),
        Some(json!({
            "jobReference": {"projectId": PROJECT, "jobId": "bench-job"},
            "configuration": {"query": {"query": "SELECT 1 AS x", "useLegacySql": false}}
        })),
    )
    .await?;
    let job_url = format!("{api}/jobs/bench-job");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let job = call(&http, reqwest::Method::GET, &job_url, None).await?;
        if job["status"]["state"] == "DONE" {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Request {
                what: job_url,
                detail: format!("job not DONE after {READY_TIMEOUT:?}: {job}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok([format!("{api}/datasets/bench/tables/events"), job_url])
}

struct Outcome {
    latencies_us: Vec<u64>,
    failures: u64,
    first_failure: Option<String>,
}

/// One connection's share of the load: takes request numbers from `next` until `total` are issued.
async fn worker(urls: Arc<[String; 2]>, next: Arc<AtomicU64>, total: u64) -> Outcome {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("static client config");
    let mut out = Outcome {
        latencies_us: Vec::new(),
        failures: 0,
        first_failure: None,
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return out;
        }
        let url = &urls[(i % 2) as usize];
        let began = Instant::now();
        let result = match http.get(url).send().await {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(body) => Err(format!(
                        "GET {url}: HTTP {status}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => Err(format!("GET {url}: {e}")),
                }
            }
            Err(e) => Err(format!("GET {url}: {e}")),
        };
        out.latencies_us.push(began.elapsed().as_micros() as u64);
        if let Err(e) = result {
            out.failures += 1;
            out.first_failure.get_or_insert(e);
        }
    }
}

async fn run_load(
    base: &str,
    requests: u64,
    concurrency: usize,
) -> Result<(Duration, Vec<u64>), BenchError> {
    let urls = Arc::new(prepare(base).await?);
    let pass = |total: u64| {
        let next = Arc::new(AtomicU64::new(0));
        let urls = urls.clone();
        async move {
            let began = Instant::now();
            let handles: Vec<_> = (0..concurrency)
                .map(|_| tokio::spawn(worker(urls.clone(), next.clone(), total)))
                .collect();
            let mut all = Outcome {
                latencies_us: Vec::with_capacity(total as usize),
                failures: 0,
                first_failure: None,
            };
            for h in handles {
                let o = h.await.expect("worker task does not panic");
                all.latencies_us.extend(o.latencies_us);
                all.failures += o.failures;
                if all.first_failure.is_none() {
                    all.first_failure = o.first_failure;
                }
            }
            (began.elapsed(), all)
        }
    };
    // Connections are opened and caches warmed before the clock that counts.
    pass(WARMUP_REQUESTS).await;
    let (elapsed, outcome) = pass(requests).await;
    if outcome.failures > 0 {
        return Err(BenchError::Failures {
            failed: outcome.failures,
            total: requests,
            first: outcome.first_failure.unwrap_or_default(),
        });
    }
    Ok((elapsed, outcome.latencies_us))
}

fn load(
    bin: &Path,
    requests: u64,
    concurrency: usize,
) -> Result<Vec<(String, String)>, BenchError> {
    let (server, _) = start(bin)?;
    let rt = tokio::runtime::Runtime::new()?;
    let (elapsed, mut lat) = rt.block_on(run_load(&server.base_url, requests, concurrency))?;
    let stats = rt.block_on(async {
        call(
            &reqwest::Client::new(),
            reqwest::Method::GET,
            &format!("{}/_emulator/stats", server.base_url),
            None,
        )
        .await
    });
    drop(server);
    lat.sort_unstable();
    let ms: Vec<f64> = lat.iter().map(|&us| us as f64 / 1e3).collect();
    let counted = |method: &str| match &stats {
        Ok(s) => s["requests"][method]
            .as_u64()
            .map_or("n/a".to_string(), |n| n.to_string()),
        Err(_) => "n/a".to_string(),
    };
    Ok(vec![
        ("load_requests".into(), requests.to_string()),
        ("load_concurrency".into(), concurrency.to_string()),
        (
            "load_seconds".into(),
            format!("{:.3}", elapsed.as_secs_f64()),
        ),
        (
            "load_rps".into(),
            format!("{:.0}", requests as f64 / elapsed.as_secs_f64()),
        ),
        (
            "latency_p50_ms".into(),
            format!("{:.2}", percentile(&ms, 50.0)),
        ),
        (
            "latency_p99_ms".into(),
            format!("{:.2}", percentile(&ms, 99.0)),
        ),
        ("latency_max_ms".into(), format!("{:.2}", ms[ms.len() - 1])),
        ("server_counted_tables_get".into(), counted("tables.get")),
        ("server_counted_jobs_get".into(), counted("jobs.get")),
    ])
}

/// The program's only output: the figures, one `key=value` per line, on stdout.
fn report(lines: &[(String, String)]) {
    for (key, value) in lines {
        println!("{key}={value}");
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Startup { bin, runs } => startup(&bin, runs.max(1)),
        Mode::Load {
            bin,
            requests,
            concurrency,
        } => load(&bin, requests.max(1), concurrency.max(1)),
    };
    match result {
        Ok(lines) => {
            report(&lines);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // The error line is this program's designated diagnostic output.
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
