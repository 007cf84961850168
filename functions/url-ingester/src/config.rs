//! The ingester's configuration, read once at cold start.
//!
//! Every value is read through [`Env`]; the settings that are more than a number or a flag
//! (`ALLOW_PRIVATE_NETWORKS`, `SOURCE_PROXY`, `CHECKSUM_ALGORITHM`) parse with `FromStr`
//! through [`Env::parse_or`] / [`Env::parse`], and a bad value is an error naming the
//! variable, the value and what is accepted.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use tributary::checksum::ChecksumAlgorithm;
use tributary::{Env, Error};

use crate::guard::{Policy, parse_private_networks};

/// Where downloads may go besides the public internet (`ALLOW_PRIVATE_NETWORKS`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PrivateNetworks {
    /// `false` (the default): no private, loopback or link-local address.
    #[default]
    Refused,
    /// `true`: every address (tests, VPC-internal sources).
    All,
    /// Comma-separated CIDRs such as `10.20.0.0/16`: these networks only.
    Only(Vec<(IpAddr, u8)>),
}

impl PrivateNetworks {
    /// What `ALLOW_PRIVATE_NETWORKS` accepts.
    pub const EXPECTED: &'static str = "true, false, or comma-separated CIDRs such as 10.20.0.0/16";

    /// The guard's policy with these networks and `allowed_hosts`.
    pub fn policy(self, allowed_hosts: Vec<String>) -> Policy {
        let (allow_private, allowed_networks) = match self {
            PrivateNetworks::Refused => (false, Vec::new()),
            PrivateNetworks::All => (true, Vec::new()),
            PrivateNetworks::Only(nets) => (false, nets),
        };
        Policy {
            allow_private,
            allowed_networks,
            allowed_hosts,
        }
    }
}

impl FromStr for PrivateNetworks {
    type Err = String;

    /// A boolean (any spelling [`tributary::config::parse_bool`] takes), or CIDRs.
    fn from_str(raw: &str) -> Result<PrivateNetworks, String> {
        Ok(match parse_private_networks(raw)? {
            (true, _) => PrivateNetworks::All,
            (false, nets) if nets.is_empty() => PrivateNetworks::Refused,
            (false, nets) => PrivateNetworks::Only(nets),
        })
    }
}

/// The HTTP(S) proxy downloads go through (`SOURCE_PROXY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl(pub reqwest::Url);

impl ProxyUrl {
    /// What `SOURCE_PROXY` accepts.
    pub const EXPECTED: &'static str = "a proxy URL such as http://proxy.internal:3128";
}

impl FromStr for ProxyUrl {
    type Err = String;

    /// An absolute `http` or `https` URL with a host.
    fn from_str(raw: &str) -> Result<ProxyUrl, String> {
        reqwest::Url::parse(raw.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .map(ProxyUrl)
            .ok_or_else(|| "not an http or https URL".to_owned())
    }
}

/// Configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bucket when the request names none (`DEFAULT_BUCKET`).
    pub default_bucket: Option<String>,
    /// Key prefix when the request names no key (`DEFAULT_PREFIX`, default `raw/`).
    pub default_prefix: String,
    /// Part size in MiB (`PART_SIZE_MIB`, default 16, 5..=5120).
    pub part_size_mib: u64,
    /// Parts uploaded at once (`CONCURRENCY`, default 4, 1..=64).
    pub concurrency: usize,
    /// Where downloads may go (`ALLOW_PRIVATE_NETWORKS`, `ALLOWED_HOSTS`).
    pub policy: Policy,
    /// HTTP(S) proxy for downloads (`SOURCE_PROXY`). The usual `HTTP_PROXY`, `HTTPS_PROXY`,
    /// `ALL_PROXY` variables are ignored; through the proxy the guard still checks every name
    /// and address before a request leaves.
    pub source_proxy: Option<reqwest::Url>,
    /// Stop and checkpoint when less than this much time is left (`DEADLINE_MARGIN_SECS`, 30).
    pub deadline_margin: Duration,
    /// Re-invoke the function with the checkpoint when stopped (`CONTINUE_ASYNC`).
    pub continue_async: bool,
    /// TCP/TLS connect timeout (`CONNECT_TIMEOUT_SECS`, default 10).
    pub connect_timeout: Duration,
    /// Longest silence while reading the body (`READ_TIMEOUT_SECS`, default 30).
    pub read_timeout: Duration,
    /// Between progress log lines (`PROGRESS_INTERVAL_SECS`, default 5).
    pub progress_interval: Duration,
    /// Full-object checksum (`CHECKSUM_ALGORITHM`: CRC64NVME default, or CRC32C).
    pub checksum: ChecksumAlgorithm,
    /// Namespace of the EMF metrics (`METRICS_NAMESPACE`, default `Tributary`).
    pub metrics_namespace: String,
    /// Bytes per child of a ranged ingestion when the plan names no `ranges`, in MiB
    /// (`RANGE_MB`, default 1024, 5..=1048576).
    pub range_mib: u64,
}

impl Config {
    /// Reads and validates the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> tributary::Result<Config> {
        let secs = |name: &str, default: u64, max: u64| -> tributary::Result<Duration> {
            Ok(Duration::from_secs(env.int_in(name, default, 1, max)?))
        };
        Ok(Config {
            default_bucket: env.get("DEFAULT_BUCKET").map(str::to_owned),
            default_prefix: env.string_or("DEFAULT_PREFIX", "raw/"),
            part_size_mib: env.int_in("PART_SIZE_MIB", 16u64, 5, 5120)?,
            concurrency: env.int_in("CONCURRENCY", 4usize, 1, 64)?,
            policy: env
                .parse_or(
                    "ALLOW_PRIVATE_NETWORKS",
                    PrivateNetworks::Refused,
                    PrivateNetworks::EXPECTED,
                )?
                .policy(env.list("ALLOWED_HOSTS")),
            source_proxy: env
                .parse::<ProxyUrl>("SOURCE_PROXY", ProxyUrl::EXPECTED)?
                .map(|p| p.0),
            deadline_margin: secs("DEADLINE_MARGIN_SECS", 30, 600)?,
            continue_async: env.bool_or("CONTINUE_ASYNC", false)?,
            connect_timeout: secs("CONNECT_TIMEOUT_SECS", 10, 300)?,
            read_timeout: secs("READ_TIMEOUT_SECS", 30, 900)?,
            progress_interval: secs("PROGRESS_INTERVAL_SECS", 5, 3600)?,
            checksum: env.parse_or(
                "CHECKSUM_ALGORITHM",
                ChecksumAlgorithm::Crc64Nvme,
                "CRC64NVME or CRC32C",
            )?,
            metrics_namespace: env.string_or("METRICS_NAMESPACE", "Tributary"),
            range_mib: env.int_in("RANGE_MB", 1024u64, 5, 1024 * 1024)?,
        })
    }

    /// The HTTP client every download uses: the SSRF guard as its resolver, proxies from
    /// `SOURCE_PROXY` only (never from the process environment), no automatic redirects
    /// ([`crate::source`] follows them, checking every hop), the configured timeouts.
    pub fn http_client(&self) -> tributary::Result<reqwest::Client> {
        let policy = std::sync::Arc::new(self.policy.clone());
        let resolver = crate::guard::GuardedResolver::new(policy).exempt(
            self.source_proxy
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_owned)),
        );
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(proxy) = &self.source_proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|e| {
                Error::config(
                    "SOURCE_PROXY",
                    proxy.as_str(),
                    e.to_string(),
                    ProxyUrl::EXPECTED,
                )
            })?;
            builder = builder.proxy(proxy);
        }
        builder
            .user_agent(concat!(
                "tributary-url-ingester/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .dns_resolver(std::sync::Arc::new(resolver))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::config("(HTTP client)", "", e.to_string(), "a working TLS set-up"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_networks_parse_to_one_choice() {
        assert_eq!("false".parse(), Ok(PrivateNetworks::Refused));
        assert_eq!("on".parse(), Ok(PrivateNetworks::All));
        assert!(matches!(
            "10.20.0.0/16".parse::<PrivateNetworks>(),
            Ok(PrivateNetworks::Only(n)) if n.len() == 1
        ));
        let err = Config::from_env(&Env::from_pairs([("ALLOW_PRIVATE_NETWORKS", "nope")]))
            .expect_err("bad value")
            .to_string();
        assert!(
            err.contains("ALLOW_PRIVATE_NETWORKS") && err.contains(PrivateNetworks::EXPECTED),
            "{err}"
        );
    }

    #[test]
    fn a_proxy_must_be_an_http_url() {
        let err = Config::from_env(&Env::from_pairs([("SOURCE_PROXY", "ftp://p")]))
            .expect_err("bad proxy")
            .to_string();
        assert!(
            err.contains("SOURCE_PROXY") && err.contains("not an http or https URL"),
            "{err}"
        );
        let ok =
            Config::from_env(&Env::from_pairs([("SOURCE_PROXY", "http://p:3128")])).expect("proxy");
        assert_eq!(
            ok.source_proxy.map(|u| u.to_string()),
            Some("http://p:3128/".into())
        );
    }
}
