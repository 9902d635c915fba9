//! Which addresses a user-supplied Bitbucket URL may reach (SSRF guard).
//!
//! The check runs inside the HTTP client's resolver, so the connection goes to
//! the very addresses that were checked: no second lookup for DNS rebinding to change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Operator exceptions to the internal-address rule: private networks an
/// on-premises Data Center may live in, and, separately, the hosts that may be
/// reached over plain HTTP. Neither lets a host name resolve to anything it likes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetPolicy {
    allowed_nets: Vec<IpNet>,
    plain_http_hosts: Vec<String>,
}

impl NetPolicy {
    /// `BITBUCKET_ALLOWED_PRIVATE`: comma-separated CIDRs or addresses (`10.0.0.0/8`).
    /// Link-local addresses (cloud metadata) stay refused unless a CIDR inside
    /// the link-local range names them.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for item in items(list) {
            if let Ok(net) = item.parse::<IpNet>() {
                policy.allowed_nets.push(net.trunc());
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                policy.allowed_nets.push(IpNet::from(ip));
            } else {
                return Err(format!(
                    "'{item}' is not a CIDR or an address; list the networks your Data Center resolves to (host names are not enough: a name can resolve anywhere), and plain-HTTP hosts in BITBUCKET_ALLOWED_HTTP"
                ));
            }
        }
        Ok(policy)
    }

    /// `BITBUCKET_ALLOWED_HTTP`: comma-separated hosts (names or addresses) that
    /// may be reached over plain `http://`. Their addresses are still judged.
    pub fn with_plain_http(mut self, list: &str) -> Result<Self, String> {
        for item in items(list) {
            let host = item.trim_start_matches('[').trim_end_matches(']');
            let valid = host.parse::<IpAddr>().is_ok()
                || host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !valid {
                return Err(format!("'{item}' is not a host name or an address"));
            }
            self.plain_http_hosts.push(host.to_ascii_lowercase());
        }
        Ok(self)
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if is_link_local(ip) {
            return self.allowed_nets.iter().any(|net| net.contains(&ip) && is_link_local(net.network()));
        }
        !is_internal(ip) || self.allowed_nets.iter().any(|net| net.contains(&ip))
    }

    /// Plain `http://` is only for hosts the operator listed for it.
    pub fn allows_plain_http(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.plain_http_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn is_link_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
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
        || first == 0x2001 && ip.segments()[1] == 0 // Teredo 2001::/32: its IPv4 is obfuscated, refuse it whole
        || first == 0x64 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1 // local-use NAT64 64:ff9b:1::/48
        || embedded_v4(ip).is_some_and(is_internal_v4)
}

/// The IPv4 address inside NAT64 (64:ff9b::/96), IPv4-compatible (::a.b.c.d),
/// IPv4-translated (::ffff:0:a.b.c.d) and 6to4 (2002:aabb:ccdd::/48) forms.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(v4(s[6], s[7]));
    }
    if s[0..6] == [0; 6] || (s[0..4] == [0; 4] && s[4] == 0xffff && s[5] == 0) {
        return Some(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(v4(s[1], s[2]));
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
            if found.iter().any(|addr| !policy.allows_ip(addr.ip())) {
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
            "64:ff9b:1::a00:1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
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
    fn operators_allow_networks_and_plain_http_separately() {
        let policy = NetPolicy::parse("10.0.0.0/8,127.0.0.1").unwrap();
        assert!(policy.allows_ip(ip("10.9.9.9")));
        assert!(policy.allows_ip(ip("127.0.0.1")));
        assert!(!policy.allows_ip(ip("127.0.0.2")));
        assert!(!policy.allows_ip(ip("192.168.0.1")));
        assert!(!policy.allows_plain_http("127.0.0.1"), "a private network is not a licence for plain HTTP");
        let policy = policy.with_plain_http("git.corp.example,127.0.0.1").unwrap();
        assert!(policy.allows_plain_http("GIT.corp.example"));
        assert!(policy.allows_plain_http("127.0.0.1"));
        assert!(!policy.allows_plain_http("example.com"));
        assert!(NetPolicy::parse("git.corp.example").is_err(), "host names no longer open networks");
    }

    #[test]
    fn metadata_stays_refused_unless_a_link_local_cidr_names_it() {
        let everything = NetPolicy::parse("0.0.0.0/0,::/0").unwrap();
        assert!(everything.allows_ip(ip("10.0.0.1")));
        assert!(!everything.allows_ip(ip("169.254.169.254")));
        assert!(!everything.allows_ip(ip("fe80::1")));
        assert!(NetPolicy::parse("169.254.169.0/24").unwrap().allows_ip(ip("169.254.169.254")));
    }
}
