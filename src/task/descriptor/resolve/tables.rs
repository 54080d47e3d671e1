//! Where things live: the project (flag, descriptor, environment), the job
//! location (flag, descriptor) and the
//! destination and checkpoint tables.

use super::{Builder, Mode, UNRESOLVED_PROJECT};
use crate::task::descriptor::ident;
use crate::task::descriptor::raw::Descriptor;
use crate::task::descriptor::{DEFAULT_CHECKPOINT_TABLE, PROJECT_ENV_VARS};
use crate::task::settings::{self, TableRef};

impl Builder<'_> {
    /// The job location: `--location` (when resolving), else the descriptor's.
    pub(super) fn location(&mut self, d: &Descriptor) -> Option<String> {
        let flag = match self.mode {
            Mode::Resolve => self.overrides.location.clone(),
            Mode::Static => None,
        };
        let (field, loc) = match (flag, &d.location) {
            (Some(l), _) => ("--location", l),
            (None, Some(l)) => ("location", l.clone()),
            (None, None) => return None,
        };
        match ident::location(&loc) {
            Ok(()) => Some(loc),
            Err(p) => {
                self.problem(field, p);
                None
            }
        }
    }

    pub(super) fn project(&mut self, d: &Descriptor) -> Option<String> {
        let mut candidates: Vec<(String, String)> = Vec::new();
        if self.mode == Mode::Resolve
            && let Some(p) = &self.overrides.project
        {
            candidates.push(("--project".into(), p.clone()));
        }
        if let Some(p) = &d.project {
            candidates.push(("project".into(), p.clone()));
        }
        if self.mode == Mode::Resolve {
            for var in PROJECT_ENV_VARS {
                if let Some(p) = (self.env)(var).filter(|p| !p.is_empty()) {
                    candidates.push((var.to_string(), p));
                }
            }
        }
        // Only the value that will be used must be valid; a stale
        // environment variable behind a good `--project` is irrelevant.
        match candidates.into_iter().next() {
            Some((field, p)) => match ident::project_id(&p) {
                Ok(()) => Some(p),
                Err(e) => {
                    self.problem(field, e);
                    None
                }
            },
            None if self.mode == Mode::Static => Some(UNRESOLVED_PROJECT.to_string()),
            None => {
                self.issue(
                    "project",
                    "no project given",
                    "set \"project\" in the descriptor, pass --project, or set GOOGLE_CLOUD_PROJECT",
                );
                None
            }
        }
    }

    pub(super) fn table(
        &mut self,
        field: &str,
        s: &str,
        project: Option<&str>,
    ) -> Option<TableRef> {
        match ident::table_name(s) {
            Ok(t) => Some(TableRef {
                project: t.project.or_else(|| project.map(str::to_string))?,
                dataset: t.dataset,
                table: t.table,
            }),
            Err(p) => {
                self.problem(field, p);
                None
            }
        }
    }

    /// The audit table: as given, or `_bq_backfill_audit` beside the
    /// destination; it must be neither the destination nor the copy source.
    pub(super) fn checkpoint(
        &mut self,
        d: &Descriptor,
        project: Option<&str>,
        destination: Option<&TableRef>,
        source: Option<&settings::Source>,
    ) -> Option<TableRef> {
        let checkpoint_table = match (&d.checkpoint, destination) {
            (Some(c), _) => self.table("checkpoint.table", &c.table, project),
            (None, Some(dest)) => Some(TableRef {
                project: dest.project.clone(),
                dataset: dest.dataset.clone(),
                table: DEFAULT_CHECKPOINT_TABLE.to_string(),
            }),
            (None, None) => None,
        };
        if let (Some(cp), Some(dest)) = (&checkpoint_table, destination)
            && cp == dest
        {
            self.issue(
            "checkpoint.table",
            format!("the checkpoint table `{cp}` is the destination table"),
            "record progress in a separate table, or leave `checkpoint` out to use `_bq_backfill_audit` in the destination's dataset",
        );
        }
        if let (Some(cp), Some(settings::Source::Copy { table })) = (&checkpoint_table, source)
            && cp == table
        {
            self.issue(
                "checkpoint.table",
                format!("the checkpoint table `{cp}` is the copy source"),
                "record progress in a separate table",
            );
        }
        checkpoint_table
    }
}
