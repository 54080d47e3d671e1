//! BigQuery's location rules for jobs: where a new job runs, and which job calls reach it.
//!
//! A job runs in the location its `jobReference.location` names, else in the location of the
//! datasets it reads and writes, else in `US`. Every dataset a job touches must be in the job's
//! location, or the job fails with `notFound`. Jobs in the `US` and `EU` multi-regions can be
//! fetched, cancelled and read without `location`; any other job needs it on jobs.get,
//! jobs.getQueryResults, jobs.cancel and jobs.delete, and a missing or wrong location is a 404.

use crate::catalog::{Catalog, DEFAULT_LOCATION};
use crate::error::ErrorProto;

/// `US` and `EU`, the multi-regions whose jobs are found without a `location`.
pub fn is_multi_region(location: &str) -> bool {
    location.eq_ignore_ascii_case("US") || location.eq_ignore_ascii_case("EU")
}

/// Whether a job call with the `location` parameter `requested` (absent or empty: none) reaches
/// a job that runs in `actual`.
pub fn reaches(requested: Option<&str>, actual: &str) -> bool {
    match requested.filter(|l| !l.is_empty()) {
        Some(loc) => loc.eq_ignore_ascii_case(actual),
        None => is_multi_region(actual),
    }
}

/// Where a new job runs, and the error it fails with if a dataset it touches is elsewhere.
#[derive(Debug, PartialEq)]
pub struct Placement {
    /// The job's location.
    pub location: String,
    /// `notFound` naming the first dataset outside `location`, as BigQuery reports it.
    pub error: Option<ErrorProto>,
}

/// Places a job that names `requested` (if any) and touches `datasets` (project, dataset), the
/// destination first. Datasets that do not exist are ignored here: the job reports them when it runs.
pub fn place(
    catalog: &Catalog,
    requested: Option<&str>,
    datasets: &[(String, String)],
) -> Placement {
    let found: Vec<(&(String, String), &str)> = datasets
        .iter()
        .filter_map(|key| {
            let meta = catalog.dataset(&key.0, &key.1).ok()?;
            Some((key, meta.location.as_str()))
        })
        .collect();
    let location = requested
        .filter(|l| !l.is_empty())
        .or_else(|| found.first().map(|(_, loc)| *loc))
        .unwrap_or(DEFAULT_LOCATION)
        .to_string();
    let error = found
        .iter()
        .find(|(_, loc)| !loc.eq_ignore_ascii_case(&location))
        .map(|((p, d), _)| {
            ErrorProto::new(
                "notFound",
                format!("Not found: Dataset {p}:{d} was not found in location {location}"),
            )
        });
    Placement { location, error }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn catalog() -> Catalog {
        let mut cat = Catalog::default();
        for (d, loc) in [
            ("tokyo", "asia-northeast1"),
            ("us_data", "US"),
            ("eu_data", "EU"),
        ] {
            cat.insert_dataset(
                "p",
                &json!({"datasetReference": {"datasetId": d}, "location": loc}),
            )
            .unwrap();
        }
        cat
    }

    fn keys(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|d| ("p".to_string(), d.to_string()))
            .collect()
    }

    #[test]
    fn a_job_without_location_runs_where_its_datasets_are() {
        let p = place(&catalog(), None, &keys(&["tokyo"]));
        assert_eq!(
            p,
            Placement {
                location: "asia-northeast1".into(),
                error: None
            }
        );
    }

    #[test]
    fn a_job_touching_no_dataset_runs_in_us() {
        let p = place(&catalog(), None, &keys(&["missing"]));
        assert_eq!(
            p,
            Placement {
                location: "US".into(),
                error: None
            }
        );
        assert_eq!(place(&catalog(), Some(""), &[]).location, "US");
    }

    #[test]
    fn a_named_location_wins_and_a_dataset_elsewhere_fails_the_job() {
        let p = place(
            &catalog(),
            Some("asia-northeast1"),
            &keys(&["tokyo", "us_data"]),
        );
        assert_eq!(p.location, "asia-northeast1");
        let err = p.error.expect("us_data is in US");
        assert_eq!(err.reason, "notFound");
        assert_eq!(
            err.message,
            "Not found: Dataset p:us_data was not found in location asia-northeast1"
        );
    }

    #[test]
    fn locations_compare_case_insensitively() {
        assert_eq!(
            place(&catalog(), Some("us"), &keys(&["us_data"])).error,
            None
        );
        assert!(reaches(Some("ASIA-NORTHEAST1"), "asia-northeast1"));
    }

    #[test]
    fn only_multi_region_jobs_are_reached_without_location() {
        assert!(reaches(None, "US"));
        assert!(reaches(Some(""), "EU"));
        assert!(!reaches(None, "asia-northeast1"));
        assert!(!reaches(None, "us-central1"));
        assert!(reaches(Some("us-central1"), "us-central1"));
        assert!(!reaches(Some("EU"), "US"));
        assert!(!reaches(Some("US"), "us-central1"));
    }
}
