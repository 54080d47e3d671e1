//! The metadata server (GCE, GKE, Cloud Run, Cloud Composer workers), found
//! the way Google's libraries find it: `GCE_METADATA_HOST` names it (tests
//! point it at a local server), else the link-local address
//! (`GCE_METADATA_IP` overrides); a short probe decides within seconds.

use std::time::Duration;

use reqwest::header::HeaderValue;

use super::Token;
use super::http::{send, token_from};
use crate::bq::BqError;

const DEFAULT_IP: &str = "169.254.169.254";
/// Where Linux names the machine: "Google Compute Engine" on GCE and GKE.
const DMI_PRODUCT_NAME: &str = "/sys/class/dmi/id/product_name";
const FLAVOR: &str = "Metadata-Flavor";
/// Per-try probe timeout and tries: an answer or "none" within about 3 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_TRIES: u32 = 3;

pub(super) struct Metadata {
    /// `http://host[:port]`.
    pub base: String,
}

impl Metadata {
    /// The address to try, from the environment.
    pub(super) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Metadata {
        let host = env("GCE_METADATA_HOST")
            .or_else(|| env("GCE_METADATA_IP"))
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_IP.to_string());
        let host = host.trim().trim_end_matches('/');
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.to_string()
        } else {
            format!("http://{host}")
        };
        Metadata { base }
    }

    /// Whether a metadata server is here: it answers `Metadata-Flavor:
    /// Google` on its root, or (at the default address) the machine says it
    /// is a Google VM, whose metadata server may be slow to start: its token
    /// requests are then retried like any transient failure.
    pub(super) async fn probe(&self, http: &reqwest::Client, default_address: bool) -> bool {
        self.answers(http).await || (default_address && on_google_vm(DMI_PRODUCT_NAME))
    }

    async fn answers(&self, http: &reqwest::Client) -> bool {
        for _ in 0..PROBE_TRIES {
            let answer = http
                .get(format!("{}/", self.base))
                .header(FLAVOR, "Google")
                .timeout(PROBE_TIMEOUT)
                .send()
                .await;
            match answer {
                Ok(r) => {
                    return r.headers().get(FLAVOR) == Some(&HeaderValue::from_static("Google"));
                }
                Err(e) if e.is_connect() => {
                    // Refused outright: nothing listens; a retry will not change that soon.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {}
            }
        }
        false
    }

    /// Whether neither `GCE_METADATA_HOST` nor `GCE_METADATA_IP` moved it.
    pub(super) fn is_default(&self) -> bool {
        self.base == format!("http://{DEFAULT_IP}")
    }

    pub(super) async fn token(
        &self,
        http: &reqwest::Client,
        scope: &str,
    ) -> Result<Token, BqError> {
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            self.base
        );
        let what = "the metadata server";
        let request = http
            .get(&url)
            .query(&[("scopes", scope)])
            .header(FLAVOR, "Google");
        let body = send(request, what, &url).await?;
        token_from(&body, what)
    }
}

/// The machine's DMI product name says Google (the check Google's own
/// libraries make besides the probe).
fn on_google_vm(path: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|name| name.trim().starts_with("Google"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_comes_from_gce_metadata_host_then_the_ip() {
        let env = |k: &str| (k == "GCE_METADATA_HOST").then(|| "127.0.0.1:8080".to_string());
        assert_eq!(Metadata::from_env(&env).base, "http://127.0.0.1:8080");
        let env = |k: &str| (k == "GCE_METADATA_IP").then(|| "10.0.0.1".to_string());
        assert_eq!(Metadata::from_env(&env).base, "http://10.0.0.1");
        assert_eq!(Metadata::from_env(&|_| None).base, "http://169.254.169.254");
    }

    #[test]
    fn a_google_vm_is_recognised_by_its_dmi_product_name() {
        let dir = std::env::temp_dir().join(format!("bqb-dmi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("product_name");
        std::fs::write(&file, "Google Compute Engine\n").unwrap();
        assert!(on_google_vm(file.to_str().unwrap()));
        std::fs::write(&file, "Standard PC (Q35 + ICH9, 2009)\n").unwrap();
        assert!(!on_google_vm(file.to_str().unwrap()));
        assert!(!on_google_vm(dir.join("absent").to_str().unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
