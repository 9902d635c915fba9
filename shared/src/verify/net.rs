//! Which addresses a user-supplied Bitbucket URL may reach (SSRF guard).
//!
//! The check runs inside the HTTP client's resolver, so the connection goes to
//! the very addresses that were checked: no second lookup for DNS rebinding to change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Operator exceptions to the internal-address rule (an on-premises Data Center
/// inside a VPC; the tests' loopback fakes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetPolicy {
    allowed_hosts: Vec<String>,
    allowed_nets: Vec<IpNet>,
}

impl NetPolicy {
    /// Parses a comma-separated list of host names and CIDRs (`git.corp,10.0.0.0/8`).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Ok(net) = item.parse::<IpNet>() {
                policy.allowed_nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                policy.allowed_nets.push(IpNet::from(ip));
            } else if item.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
                policy.allowed_hosts.push(item.to_ascii_lowercase());
            } else {
                return Err(format!("'{item}' is neither a host name nor a CIDR"));
            }
        }
        Ok(policy)
    }

    pub fn allows_host(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_internal(ip) || self.allowed_nets.iter().any(|net| net.contains(&ip))
    }

    /// Plain `http://` is only for servers the operator vouched for.
    pub fn allows_plain_http(&self, host: &str) -> bool {
        self.allows_host(host)
            || parse_ip_host(host).is_some_and(|ip| self.allowed_nets.iter().any(|net| net.contains(&canonical(ip))))
    }
}

/// `[::1]` and `127.0.0.1` as they appear in a URL's host.
pub fn parse_ip_host(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// IPv4-mapped and -compatible IPv6 addresses are judged as the IPv4 they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Loopback, private, link-local (cloud metadata), CGNAT, unspecified, multicast,
/// broadcast, documentation, benchmarking and reserved ranges, and NAT64 forms.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || embedded_v4(ip).is_some_and(is_internal_v4)
}

/// The IPv4 address inside NAT64 (64:ff9b::/96) and IPv4-compatible (::a.b.c.d) forms.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(v4());
    }
    if s[0..6] == [0; 6] {
        return Some(v4());
    }
    None
}

/// A host resolved only to addresses the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to an internal address")]
pub struct BlockedAddress {
    pub host: String,
}

/// The name did not resolve at all.
#[derive(Debug, thiserror::Error)]
#[error("{host} does not resolve")]
pub struct UnknownHost {
    pub host: String,
}

/// The resolver the Bitbucket client uses: a static table, then the system
/// lookup, then the policy.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    pub policy: Arc<NetPolicy>,
    /// Like /etc/hosts, for embedding and hermetic tests; still judged by the policy.
    pub static_hosts: Arc<Vec<(String, IpAddr)>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        let pinned: Vec<SocketAddr> = self
            .static_hosts
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(&host))
            .map(|(_, ip)| SocketAddr::new(*ip, 0))
            .collect();
        Box::pin(async move {
            // RFC 6761: `.invalid` never resolves, so no query is sent for it.
            let reserved = host.to_ascii_lowercase().trim_end_matches('.').ends_with(".invalid");
            let found: Vec<SocketAddr> = if !pinned.is_empty() {
                pinned
            } else if reserved {
                Vec::new()
            } else {
                match tokio::net::lookup_host((host.as_str(), 0)).await {
                    Ok(addrs) => addrs.collect(),
                    Err(_) => Vec::new(),
                }
            };
            if found.is_empty() {
                return Err(Box::new(UnknownHost { host }) as _);
            }
            // One internal address poisons the whole answer: otherwise a rebinding
            // server could hand out a public and a private address together.
            if !policy.allows_host(&host) && found.iter().any(|addr| !policy.allows_ip(addr.ip())) {
                return Err(Box::new(BlockedAddress { host }) as _);
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "ff02::1",
        ] {
            assert!(is_internal(ip(text)), "{text} must be internal");
            assert!(!NetPolicy::default().allows_ip(ip(text)), "{text}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for text in ["104.192.141.1", "8.8.8.8", "2600:1f18::1"] {
            assert!(!is_internal(ip(text)), "{text}");
        }
    }

    #[test]
    fn operators_can_allow_hosts_and_networks() {
        let policy = NetPolicy::parse("git.corp.example, 10.0.0.0/8,127.0.0.1").unwrap();
        assert!(policy.allows_ip(ip("10.9.9.9")));
        assert!(policy.allows_ip(ip("127.0.0.1")));
        assert!(!policy.allows_ip(ip("127.0.0.2")));
        assert!(!policy.allows_ip(ip("192.168.0.1")));
        assert!(policy.allows_host("GIT.corp.example"));
        assert!(policy.allows_plain_http("127.0.0.1"));
        assert!(!policy.allows_plain_http("example.com"));
        assert!(NetPolicy::parse("http://x").is_err());
    }
}
