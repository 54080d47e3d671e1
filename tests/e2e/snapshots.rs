//! What people read, pinned: the real binary's `plan` and `status` tables
//! (with the calendar) after a run with a failed partition, with run IDs
//! and times filtered.

use bq_emulator::JobMatcher;
use serde_json::json;

use crate::harness::*;

fn filtered<F: FnOnce()>(f: F) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{8}t\d{6}-[0-9a-f]{8}", "[RUN_ID]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "[TIME]");
    settings.bind(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_status_after_a_run_with_a_failure() {
    let env = Env::demo("2024-02-01", "2024-03-01").await;
    env.emu.faults().fail_jobs(
        JobMatcher::IdContains("20240213".into()),
        "invalidQuery",
        "Syntax error: Unexpected keyword FROM at [3:1]",
    );
    let d = env.descriptor(
        "2024-02-01",
        "2024-03-01",
        json!({"on_failure": "continue", "retry": {"max_attempts": 1}}),
    );
    env.run(&d, &["run", "--end", "2024-02-20"]).expect_code(1);
    let plan = env.run(&d, &["plan"]);
    plan.expect_code(0);
    let status = env.run(&d, &["status"]);
    status.expect_code(0);
    filtered(|| {
        insta::assert_snapshot!("plan_after_a_failure", plan.stdout);
        insta::assert_snapshot!("status_after_a_failure", status.stdout);
    });
}
