//! Cancellation: SIGINT/SIGTERM stop the run loop cleanly.
//!
//! The first signal cancels: the run loop cancels the in-flight BigQuery job,
//! records CANCELLED, emits `run_finished` and exits 130 (SIGINT) or 143
//! (SIGTERM) — within 3 s, because Airflow 3 sends SIGKILL 5 s after SIGTERM
//! and GitHub Actions escalates 7.5 s after SIGINT. A second signal exits at
//! once, with the same code.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio_util::sync::CancellationToken;

use crate::exit;

/// A cloneable cancellation flag that remembers which signal fired.
#[derive(Clone, Default)]
pub struct Cancel {
    token: CancellationToken,
    signal: Arc<AtomicI32>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancel because of `signal` (libc signal number).
    pub fn cancel(&self, signal: i32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// The exit code for the signal that cancelled the run.
    pub fn exit_code(&self) -> i32 {
        match self.signal.load(Ordering::SeqCst) {
            libc::SIGINT => exit::CANCELLED_SIGINT,
            _ => exit::CANCELLED_SIGTERM,
        }
    }
}

/// Listen for SIGINT and SIGTERM: the first cancels `cancel`, the second
/// exits the process at once.
pub fn install_signal_handlers(cancel: Cancel) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = int.recv() => libc::SIGINT,
                _ = term.recv() => libc::SIGTERM,
            };
            if cancel.is_cancelled() {
                tracing::error!("second signal: exiting at once");
                std::process::exit(128 + sig);
            }
            tracing::warn!(
                signal = sig,
                "signal received: cancelling the in-flight job and stopping"
            );
            cancel.cancel(sig);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_decides_the_exit_code() {
        let c = Cancel::new();
        assert!(!c.is_cancelled());
        c.cancel(libc::SIGINT);
        c.cancel(libc::SIGTERM);
        assert!(c.is_cancelled());
        assert_eq!(c.exit_code(), 130);
        let c = Cancel::new();
        c.cancel(libc::SIGTERM);
        assert_eq!(c.exit_code(), 143);
    }
}
