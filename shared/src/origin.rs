//! The origin a secret belongs to: scheme, host and port of the Bitbucket server it
//! was verified against. A secret is sealed to it and opens only for it, so a stored
//! URL rewritten to another server cannot carry the secret there.

use std::fmt;

use url::Url;

/// `scheme://host:port`, the port always written out, so that `https://h` and
/// `https://h:443` are one origin and nothing else is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    pub fn of(url: &Url) -> Self {
        // Special schemes' hosts are already lower-case; IPv6 comes bracketed.
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or_default();
        Self(format!("{}://{host}:{port}", url.scheme()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> String {
        Origin::of(&Url::parse(text).unwrap()).to_string()
    }

    #[test]
    fn the_port_is_always_written_and_the_path_never() {
        assert_eq!(origin("https://api.bitbucket.org/2.0"), "https://api.bitbucket.org:443");
        assert_eq!(origin("https://API.Bitbucket.org:443/2.0/"), "https://api.bitbucket.org:443");
        assert_eq!(origin("http://git.corp.example/bb"), "http://git.corp.example:80");
        assert_eq!(origin("https://git.corp.example:8443/bb"), "https://git.corp.example:8443");
        assert_eq!(origin("https://[::1]:7990/"), "https://[::1]:7990");
    }

    #[test]
    fn scheme_host_and_port_each_make_another_origin() {
        let base = origin("https://git.corp.example/bb");
        for other in ["http://git.corp.example/bb", "https://git.corp.example:444/bb", "https://evil.example/bb"] {
            assert_ne!(origin(other), base, "{other}");
        }
        assert_eq!(origin("https://git.corp.example/other"), base, "the path is not part of the origin");
    }
}
