//! State survives a restart with a data directory.

use std::time::Duration;

use bq_emulator::{Config, Emulator};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn restart_keeps_tables_rows_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    {
        let env = Env::with(config.clone()).await;
        env.seeded_day_table("events").await;
        env.create_table(
            "ranged",
            json!({"schema": {"fields": [{"name": "k", "type": "INTEGER"}, {"name": "ts", "type": "TIMESTAMP"}]},
                   "rangePartitioning": {"field": "k", "range": {"start": "0", "end": "100", "interval": "10"}}}),
        )
        .await;
        env.emu
            .insert_rows(
                P,
                DS,
                "ranged",
                vec![row(
                    json!({"k": 42, "ts": "2024-01-15 10:00:00.123456 UTC"}),
                )],
            )
            .unwrap();
        let job = env
            .run_query(
                "done",
                "SELECT DATE '2024-01-15' AS dt, 7 AS n, 'p' AS s",
                Some("events$20240115"),
                "WRITE_TRUNCATE",
            )
            .await;
        assert!(job["status"].get("errorResult").is_none(), "{job}");
        env.emu.set_job_delay(Duration::from_secs(60));
        env.insert_job(query_job("inflight", "SELECT 1 AS x", None, ""))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        env.emu.shutdown().await;
    }
    let emu = Emulator::start(config).await.unwrap();
    assert_eq!(
        emu.partition_ids(P, DS, "events").unwrap(),
        ["20240114", "20240115", "20240116"]
    );
    assert_eq!(
        ns(&emu.read_rows(P, DS, "events$20240115").unwrap()),
        [("7".into(), "p".into())]
    );
    let ranged = emu.read_rows(P, DS, "ranged$40").unwrap();
    assert_eq!(ranged[0]["k"], "42");
    let before = ranged[0]["ts"].clone();
    let http = reqwest::Client::new();
    let get = |id: &str| {
        http.get(format!(
            "{}/bigquery/v2/projects/{P}/jobs/{id}",
            emu.base_url()
        ))
        .send()
    };
    let done: serde_json::Value = get("done").await.unwrap().json().await.unwrap();
    assert_eq!(done["status"]["state"], "DONE");
    assert!(done["status"].get("errorResult").is_none());
    let inflight: serde_json::Value = get("inflight").await.unwrap().json().await.unwrap();
    assert_eq!(inflight["status"]["state"], "DONE");
    assert_eq!(
        inflight["status"]["errorResult"],
        json!({"reason": "backendError", "message": "job interrupted by emulator restart"})
    );
    let (_, t): (u16, serde_json::Value) = {
        let r = http
            .get(format!(
                "{}/bigquery/v2/projects/{P}/datasets/{DS}/tables/ranged",
                emu.base_url()
            ))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    };
    assert_eq!(t["rangePartitioning"]["range"]["interval"], "10");
    emu.shutdown().await;
    // A third start reads the same values (timestamps keep microseconds).
    let emu = Emulator::start(Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    assert_eq!(emu.read_rows(P, DS, "ranged").unwrap()[0]["ts"], before);
    emu.shutdown().await;
}
