//! The SSRF guard: which hosts and addresses a download may reach.
//!
//! By default a URL may not lead to the machine's own network: loopback, private (RFC 1918),
//! link-local (including the instance metadata address 169.254.169.254), carrier-grade NAT,
//! unique-local IPv6, unspecified, multicast and reserved addresses are refused. The check runs
//! on every redirect hop: IP literals in the URL are checked directly, and host names go
//! through [`GuardedResolver`], which resolves once, drops refused addresses and hands only the
//! checked addresses to the HTTP client, so the connection goes to the address that was checked
//! (no DNS-rebinding window). `ALLOW_PRIVATE_NETWORKS=true` lifts the address check;
//! `ALLOWED_HOSTS` (comma-separated; `*.example.com` matches subdomains) restricts hosts.
//! Through a configured `SOURCE_PROXY` the proxy resolves names, so
//! [`Policy::check_url_resolved`] checks every address of a host before the request is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What the guard allows.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Allow private, loopback and link-local addresses (tests, VPC-internal sources).
    pub allow_private: bool,
    /// Private networks allowed even when `allow_private` is off (`ALLOW_PRIVATE_NETWORKS`
    /// given as CIDRs, e.g. `10.20.0.0/16`).
    pub allowed_networks: Vec<(IpAddr, u8)>,
    /// When non-empty, only these hosts (exact, or `*.suffix`).
    pub allowed_hosts: Vec<String>,
}

/// Parses `ALLOW_PRIVATE_NETWORKS`: `true`/`false`, or a comma-separated list of CIDRs.
pub fn parse_private_networks(raw: &str) -> Result<(bool, Vec<(IpAddr, u8)>), String> {
    if let Some(b) = tributary::config::parse_bool(raw) {
        return Ok((b, Vec::new()));
    }
    let mut nets = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (addr, len) = item.split_once('/').unwrap_or((item, ""));
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{item:?} is not an IP network"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = if len.is_empty() {
            max
        } else {
            len.parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{item:?} has a bad prefix length"))?
        };
        nets.push((ip, len));
    }
    Ok((false, nets))
}

fn in_network(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Policy {
    /// Checks a URL's scheme and host (and, for an IP literal, its address).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "scheme {other:?} is not allowed (http and https only)"
                ));
            }
        }
        let host = match url.host() {
            Some(h) => h,
            None => return Err("URL has no host".to_owned()),
        };
        let name = match &host {
            url::Host::Domain(d) => d.to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        if !self.allowed_hosts.is_empty()
            && !self.allowed_hosts.iter().any(|p| host_matches(p, &name))
        {
            return Err(format!("host {name} is not in ALLOWED_HOSTS"));
        }
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal {
            self.check_ip(ip)?;
        }
        Ok(())
    }

    /// Checks a URL, and with a proxy in between also its host's addresses: the proxy resolves
    /// the name itself, so every address the name has must pass, before anything connects.
    pub async fn check_url_resolved(&self, url: &reqwest::Url) -> Result<(), String> {
        self.check_url(url)?;
        let Some(url::Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(0);
        let addrs = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| format!("host {name} does not resolve: {e}"))?;
        let mut any = false;
        for a in addrs {
            any = true;
            self.check_ip(a.ip())
                .map_err(|why| format!("host {name} resolves to {why}"))?;
        }
        if any {
            Ok(())
        } else {
            Err(format!("host {name} resolves to no addresses"))
        }
    }

    /// Checks one address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.allow_private || self.allowed_networks.iter().any(|n| in_network(ip, *n)) {
            return Ok(());
        }
        match refused_kind(ip) {
            None => Ok(()),
            Some(kind) => Err(format!(
                "address {ip} is {kind}; refused (set ALLOW_PRIVATE_NETWORKS=true to allow)"
            )),
        }
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// Why an address is refused, or `None` when it is a public unicast address.
///
/// IPv6 is judged by what it leads to: only global unicast (`2000::/3`) can pass, the forms
/// that carry an IPv4 address a router or the host would act on (IPv4-mapped `::ffff:0:0/96`,
/// SIIT `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4
/// address, and the forms whose destination cannot be judged (IPv4-compatible `::/96`, local
/// NAT64 `64:ff9b:1::/48`, Teredo `2001::/32`, discard `100::/64`) are refused with the
/// reserved and special blocks (`2001::/23`, documentation `2001:db8::/32` and `3fff::/20`).
pub fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

fn refused_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let seg = v6.segments();
    if v6.is_loopback() {
        return Some("loopback");
    }
    if v6.is_unspecified() {
        return Some("unspecified");
    }
    // IPv4-mapped (::ffff:a.b.c.d) and SIIT IPv4-translated (::ffff:0:a.b.c.d).
    if seg[..6] == [0, 0, 0, 0, 0, 0xffff] || seg[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return refused_v4(embedded_v4(seg[6], seg[7]));
    }
    if seg[..6] == [0; 6] {
        return Some("IPv4-compatible (deprecated, ::/96)");
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // Well-known NAT64: judge the embedded IPv4 address.
        return refused_v4(embedded_v4(seg[6], seg[7]));
    }
    if seg[..3] == [0x64, 0xff9b, 1] {
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    if seg[..4] == [0x100, 0, 0, 0] {
        return Some("discard-only (100::/64)");
    }
    if v6.is_multicast() {
        return Some("multicast");
    }
    if seg[0] & 0xffc0 == 0xfe80 {
        return Some("link-local");
    }
    if seg[0] & 0xfe00 == 0xfc00 {
        return Some("unique-local");
    }
    if seg[0] & 0xffc0 == 0xfec0 {
        return Some("site-local");
    }
    if seg[0] & 0xe000 != 0x2000 {
        return Some("reserved (not global unicast, 2000::/3)");
    }
    if seg[0] == 0x2002 {
        // 6to4: the IPv4 address of the relay's other end.
        return refused_v4(embedded_v4(seg[1], seg[2]));
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        return Some("Teredo (2001::/32)");
    }
    if seg[0] == 0x2001 && seg[1] == 0x0db8 || seg[0] == 0x3fff && seg[1] & 0xf000 == 0 {
        return Some("documentation");
    }
    if seg[0] == 0x2001 && seg[1] < 0x0200 {
        return Some("IETF protocol assignment (2001::/23)");
    }
    None
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (instance metadata lives here)")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("carrier-grade NAT")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment")
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        Some("benchmarking")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

/// A DNS resolver that only ever returns addresses the policy allows.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<Policy>,
    exempt: Option<String>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        GuardedResolver {
            policy,
            exempt: None,
        }
    }

    /// Lets `host` (the configured `SOURCE_PROXY`, often VPC-internal) resolve unchecked.
    pub fn exempt(mut self, host: Option<String>) -> Self {
        self.exempt = host.map(|h| h.to_ascii_lowercase());
        self
    }
}

/// A connection the policy refused, as the resolver reports it to the HTTP client: the
/// download fails for good (not [`tributary::Error::SourceUnavailable`]).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let exempt = self
            .exempt
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(name.as_str()));
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if exempt {
                let addrs: Addrs = Box::new(addrs.into_iter());
                return Ok(addrs);
            }
            let mut allowed = Vec::with_capacity(addrs.len());
            let mut refusal = None;
            for a in addrs {
                match policy.check_ip(a.ip()) {
                    Ok(()) => allowed.push(a),
                    Err(why) => refusal = Some(why),
                }
            }
            if allowed.is_empty() {
                let why = refusal.unwrap_or_else(|| "no addresses".to_owned());
                return Err(Refused(format!("host {host} resolves to {why}")).into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).expect("url")
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        let p = Policy::default();
        for bad in [
            "http://127.0.0.1/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://224.0.0.1/",
        ] {
            let err = p.check_url(&url(bad)).expect_err(bad);
            assert!(err.contains("refused"), "{bad}: {err}");
        }
        for good in [
            "http://93.184.215.14/",
            "https://[2606:4700::1111]/",
            "https://example.com/data.csv",
        ] {
            assert!(p.check_url(&url(good)).is_ok(), "{good}");
        }
        let open = Policy {
            allow_private: true,
            ..Policy::default()
        };
        assert!(open.check_url(&url("http://127.0.0.1:8080/x")).is_ok());
    }

    #[test]
    fn ipv4_hidden_in_ipv6_is_refused() {
        let p = Policy::default();
        for bad in [
            "http://[::7f00:1]/",                             // IPv4-compatible 127.0.0.1
            "http://[::a9fe:a9fe]/",                          // IPv4-compatible 169.254.169.254
            "http://[::5db8:d70e]/", // IPv4-compatible, even of a public address
            "http://[::ffff:a9fe:a9fe]/", // IPv4-mapped metadata address
            "http://[::ffff:0:a9fe:a9fe]/", // SIIT
            "http://[::ffff:0:7f00:1]/", // SIIT loopback
            "http://[64:ff9b::7f00:1]/", // NAT64 loopback
            "http://[64:ff9b:1::a9fe:a9fe]/", // local-use NAT64
            "http://[64:ff9b:1:ffff::1]/", // local-use NAT64, other layout
            "http://[2002:a9fe:a9fe::1]/", // 6to4 of the metadata address
            "http://[2002:7f00:1::]/", // 6to4 of loopback
            "http://[2002:0a00:0001::1]/", // 6to4 of 10.0.0.1
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", // Teredo
            "http://[2001::1]/",     // Teredo
            "http://[100::1]/",      // discard-only
            "http://[100::ffff:a9fe:a9fe]/", // discard-only
            "http://[2001:2::1]/",   // benchmarking
            "http://[2001:10::1]/",  // ORCHID
            "http://[3fff::1]/",     // documentation (RFC 9637)
            "http://[4000::1]/",     // unallocated
            "http://[5f00::1]/",     // SRv6 SIDs
            "http://[::2]/",         // reserved ::/8
        ] {
            let err = p.check_url(&url(bad)).expect_err(bad);
            assert!(err.contains("refused"), "{bad}: {err}");
        }
        for good in [
            "http://[::ffff:93.184.215.14]/",
            "http://[64:ff9b::5db8:d70e]/",
            "http://[2002:5db8:d70e::1]/",
            "https://[2606:4700::1111]/",
            "https://[2a00:1450:4001::200e]/",
        ] {
            assert!(p.check_url(&url(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn private_networks_can_be_allowed_one_by_one() {
        let (all, nets) =
            parse_private_networks("127.0.0.1/32, 10.20.0.0/16,fd00::/8").expect("cidrs");
        assert!(!all);
        let p = Policy {
            allowed_networks: nets,
            ..Policy::default()
        };
        assert!(p.check_url(&url("http://127.0.0.1:9/x")).is_ok());
        assert!(p.check_url(&url("http://127.0.0.2/x")).is_err());
        assert!(p.check_url(&url("http://10.20.3.4/x")).is_ok());
        assert!(p.check_url(&url("http://10.21.0.1/x")).is_err());
        assert!(p.check_url(&url("http://[fd12::1]/x")).is_ok());
        assert!(p.check_url(&url("http://169.254.169.254/x")).is_err());
        assert_eq!(parse_private_networks("TRUE"), Ok((true, vec![])));
        assert!(parse_private_networks("10.0.0.0/33").is_err());
        assert!(parse_private_networks("nope").is_err());
    }

    #[test]
    fn schemes_and_allowlist() {
        let p = Policy {
            allow_private: false,
            allowed_networks: Vec::new(),
            allowed_hosts: vec!["data.example.com".into(), "*.cdn.example.org".into()],
        };
        assert!(p.check_url(&url("https://data.example.com/a")).is_ok());
        assert!(p.check_url(&url("https://eu.cdn.example.org/a")).is_ok());
        assert!(p.check_url(&url("https://cdn.example.org/a")).is_err());
        assert!(
            p.check_url(&url("https://evil.com/a"))
                .expect_err("not listed")
                .contains("ALLOWED_HOSTS")
        );
        assert!(
            Policy::default()
                .check_url(&url("ftp://example.com/a"))
                .expect_err("ftp")
                .contains("scheme")
        );
        assert!(
            Policy::default()
                .check_url(&url("file:///etc/passwd"))
                .is_err()
        );
    }
}
