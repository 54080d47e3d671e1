//! The orchestrators bq-backfill recognises from its environment, and the
//! event sinks it adds for them (before the JSON Lines sink on stdout).

use std::io;

use crate::output::calendar::RunCalendar;
use crate::output::events::EventSink;
use crate::output::github::{GithubEnv, GithubSink};
use crate::output::pipes::{self, Pipes, PipesError};
use crate::task::load::ExternalRange;
use crate::task::settings::Settings;

/// What `run` found in its environment, checked before anything runs.
#[derive(Debug, Default)]
pub struct Orchestrators {
    pub pipes: Option<Pipes>,
    pub github: Option<GithubEnv>,
}

impl Orchestrators {
    /// Dagster Pipes (`DAGSTER_PIPES_*`) and GitHub Actions
    /// (`GITHUB_ACTIONS=true`). Bad Pipes parameters are an error (exit 78).
    pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> Result<Orchestrators, PipesError> {
        Ok(Orchestrators {
            pipes: pipes::from_env(env)?,
            github: GithubEnv::detect(env),
        })
    }

    /// The range an orchestrator selected (Dagster's partition key, key
    /// range or time window).
    pub fn external_range(&self) -> Option<ExternalRange> {
        self.pipes.as_ref().and_then(Pipes::external_range)
    }

    /// The sinks for a run of `settings`.
    pub fn sinks(self, settings: &Settings) -> Vec<Box<dyn EventSink>> {
        let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
        if let Some(p) = self.pipes {
            match p.into_sink(settings) {
                Ok(s) => sinks.push(Box::new(s)),
                Err(e) => tracing::warn!("cannot write Dagster Pipes messages: {e}"),
            }
        }
        if let Some(g) = self.github {
            let calendar = RunCalendar::for_settings(settings);
            sinks.push(Box::new(GithubSink::new(
                g,
                calendar,
                Box::new(io::stderr()),
            )));
        }
        sinks
    }
}
