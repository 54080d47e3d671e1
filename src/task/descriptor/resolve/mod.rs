//! Resolution of a parsed descriptor into [`Settings`]: [`Overrides`] from
//! the command line, the project from the environment, defaults applied.
//! The `Builder` validates and builds each part in document order,
//! collecting every issue; its methods are split by concern into the
//! files beside this one.

use std::time::Duration;

use super::error::{DescriptorError, Issue};
use super::raw::{Descriptor, OnFailure};
use super::{DESCRIPTOR_VERSION, ident};
use crate::task::settings::{self, Settings};

mod axis;

use axis::time_granularity;
mod options;
mod partitions;
mod source;
mod tables;
mod verify;

pub use verify::{STAGING_SUFFIX, TARGET, staging_table};

/// Values from the command line that take precedence over the descriptor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--start`: replaces `partitions.start` (a range only; an explicit
    /// `partitions.list` cannot be overridden).
    pub start: Option<String>,
    /// `--end`: replaces `partitions.end`.
    pub end: Option<String>,
    /// `--max-runtime`: replaces `max_runtime_seconds`.
    pub max_runtime: Option<Duration>,
    /// `--project`: replaces `project` and the environment.
    pub project: Option<String>,
    /// `--partitions A,B,C`: replaces the range or list with these partitions.
    pub partitions: Option<Vec<String>>,
    /// `--location`: replaces `location`.
    pub location: Option<String>,
    /// `--rerun --reason TEXT`: the reason, when succeeded partitions are rebuilt.
    pub rerun: Option<String>,
    /// `--concurrency N`: replaces `concurrency`.
    pub concurrency: Option<u32>,
}

/// Resolves a parsed descriptor into run settings: the project from
/// `--project`, the descriptor or the environment (in that order), the
/// range from `--start`/`--end` or the descriptor, defaults applied.
/// `env` looks up an environment variable (pure: tests pass a closure).
pub fn resolve(
    d: Descriptor,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Settings, DescriptorError> {
    let mut b = Builder::new(Mode::Resolve, env, overrides);
    let settings = b.build(&d);
    match (DescriptorError::from_issues(b.issues), settings) {
        (Some(e), _) => Err(e),
        (None, Some(s)) => Ok(s),
        (None, None) => Err(DescriptorError::new(
            "$",
            "descriptor could not be resolved",
            "this is a bug in bq-backfill; please report it with the descriptor",
        )),
    }
}

/// Every check that needs neither the environment nor the command line;
/// a missing project or range is left for [`resolve`].
pub(super) fn check(d: &Descriptor) -> Result<(), DescriptorError> {
    let no_env = |_: &str| None;
    let no_overrides = Overrides::default();
    let mut b = Builder::new(Mode::Static, &no_env, &no_overrides);
    b.build(d);
    match DescriptorError::from_issues(b.issues) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Descriptor only: no environment, no overrides; a missing project or
    /// range is left for resolution.
    Static,
    Resolve,
}

/// Stands in for a project the environment will supply, so that the
/// descriptor's own checks run the same way in both modes.
const UNRESOLVED_PROJECT: &str = "unresolved-project";

struct Builder<'a> {
    mode: Mode,
    env: &'a dyn Fn(&str) -> Option<String>,
    overrides: &'a Overrides,
    issues: Vec<Issue>,
}

impl<'a> Builder<'a> {
    fn new(mode: Mode, env: &'a dyn Fn(&str) -> Option<String>, overrides: &'a Overrides) -> Self {
        Builder {
            mode,
            env,
            overrides,
            issues: Vec::new(),
        }
    }

    fn issue(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.issues.push(Issue {
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn problem(&mut self, field: impl Into<String>, p: ident::Problem) {
        self.issue(field, p.message, p.hint);
    }

    /// Validates everything, collecting issues; returns the settings when
    /// every part could be built.
    fn build(&mut self, d: &Descriptor) -> Option<Settings> {
        if let Some(v) = d.version
            && v != DESCRIPTOR_VERSION
        {
            self.issue(
                "version",
                format!("unsupported descriptor version {v}"),
                "set \"version\": 1 or leave it out",
            );
        }
        if let Err(p) = ident::job_name(&d.job) {
            self.problem("job", p);
        }
        let project = self.project(d);
        let location = self.location(d);
        let destination = self.table("destination", &d.destination, project.as_deref());
        let partitions = self.partitions(&d.partitions);
        let granularity = time_granularity(d.partitions.granularity);
        let source = self.source(
            &d.source,
            granularity,
            project.as_deref(),
            destination.as_ref(),
        );
        let checkpoint_table =
            self.checkpoint(d, project.as_deref(), destination.as_ref(), source.as_ref());
        let throttle = self.throttle(&d.throttle);
        let job_options = self.job_options(&d.job_config);
        let retry = self.retry(&d.retry);
        let max_runtime = self.max_runtime(d.max_runtime_seconds);
        let lease = self.lease(&d.lease);
        let concurrency = self.concurrency(d.concurrency);
        let verify = self.verify(&d.verify, granularity);
        let write = self.write(&d.write, destination.as_ref());

        Some(Settings {
            job: d.job.clone(),
            project: project?,
            location,
            destination: destination?,
            partitions: partitions?,
            source: source?,
            checkpoint_table: checkpoint_table?,
            throttle: throttle?,
            job_options: job_options?,
            on_failure: match d.on_failure {
                OnFailure::Stop => settings::OnFailure::Stop,
                OnFailure::Continue => settings::OnFailure::Continue,
            },
            retry: retry?,
            max_runtime: max_runtime?,
            lease: lease?,
            rerun: self.overrides.rerun.clone(),
            concurrency: concurrency?,
            verify: verify?,
            write: write?,
        })
    }

    /// A number in `[min, max]` (`min` excluded when `min_exclusive`).
    fn number(
        &mut self,
        field: &str,
        v: f64,
        min: f64,
        min_exclusive: bool,
        max: f64,
        hint: &str,
    ) -> Option<f64> {
        let low = if min_exclusive { v > min } else { v >= min };
        if v.is_finite() && low && v <= max {
            return Some(v);
        }
        let range = if min_exclusive {
            format!("greater than {min} and at most {max}")
        } else {
            format!("from {min} to {max}")
        };
        self.issue(field, format!("{v} is out of range: must be {range}"), hint);
        None
    }
}
