//! The Bitbucket server URL the user typed, normalised to the API base we call.

use url::Url;

use crate::origin::Origin;

pub const DEFAULT_CLOUD_URL: &str = "https://api.bitbucket.org/2.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// The Cloud REST API 2.0 (`…/2.0`): api.bitbucket.org, or a proxy of it.
    Cloud,
    /// A self-hosted Data Center / Server, kept as its root (without `/rest/api/1.0`).
    DataCenter,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    url: Url,
    flavor: Flavor,
    /// What the user typed, when we mapped it to something else (e.g. the web URL).
    normalized_from: Option<String>,
}

impl ServerUrl {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let trimmed = text.trim();
        if trimmed.len() > 2048 {
            return Err("must be at most 2048 characters");
        }
        let mut url =
            Url::parse(trimmed).map_err(|_| "must be an absolute URL such as https://api.bitbucket.org/2.0")?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must start with https://");
        }
        if url.host().is_none() {
            return Err("must name a host");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a username or password; use the username and password fields");
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not contain '?' or '#'");
        }
        let path = url.path().trim_end_matches('/').to_owned();
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();

        if host == "bitbucket.org" || host == "www.bitbucket.org" {
            let url = Url::parse(DEFAULT_CLOUD_URL).map_err(|_| "must be a URL")?;
            return Ok(Self { url, flavor: Flavor::Cloud, normalized_from: Some(trimmed.to_owned()) });
        }
        if host == "api.bitbucket.org" {
            if !(path.is_empty() || path == "/2.0") {
                return Err("must be https://api.bitbucket.org/2.0 for Bitbucket Cloud");
            }
            let mapped = path.is_empty();
            url.set_path("/2.0");
            let normalized_from = mapped.then(|| trimmed.to_owned());
            return Ok(Self { url, flavor: Flavor::Cloud, normalized_from });
        }
        if path.ends_with("/2.0") {
            url.set_path(&path);
            return Ok(Self { url, flavor: Flavor::Cloud, normalized_from: None });
        }
        let root = ["/rest/api/1.0", "/rest/api/latest"]
            .iter()
            .find_map(|suffix| path.strip_suffix(suffix))
            .unwrap_or(&path)
            .to_owned();
        let normalized_from = (root != path).then(|| trimmed.to_owned());
        url.set_path(&root);
        Ok(Self { url, flavor: Flavor::DataCenter, normalized_from })
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub fn normalized_from(&self) -> Option<&str> {
        self.normalized_from.as_deref()
    }

    /// What a connection keeps: the URL, without what the user typed instead.
    pub fn as_stored(&self) -> Self {
        Self { url: self.url.clone(), flavor: self.flavor, normalized_from: None }
    }

    /// The stored form: `…/2.0` for Cloud, the server root for Data Center.
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The origin a secret verified against this server is sealed to.
    pub fn origin(&self) -> Origin {
        Origin::of(&self.url)
    }

    /// `base` + `/segment/segment…`, each segment percent-encoded.
    pub fn join(&self, segments: &[&str]) -> Url {
        let mut url = self.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

/// Stored and answered as its stored form (`as_str`); read back through `parse`, so a stored value
/// that no longer parses is refused where the item is read.
impl serde::Serialize for ServerUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ServerUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|why| serde::de::Error::custom(format!("url {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_forms_map_to_the_api_base() {
        for typed in ["https://api.bitbucket.org/2.0", "https://api.bitbucket.org/2.0/", "https://api.bitbucket.org"] {
            let url = ServerUrl::parse(typed).unwrap();
            assert_eq!(url.as_str(), DEFAULT_CLOUD_URL, "{typed}");
            assert_eq!(url.flavor(), Flavor::Cloud);
        }
        let web = ServerUrl::parse("https://bitbucket.org/").unwrap();
        assert_eq!(web.as_str(), DEFAULT_CLOUD_URL);
        assert_eq!(web.normalized_from(), Some("https://bitbucket.org/"));
        assert!(ServerUrl::parse("https://api.bitbucket.org/1.0").is_err());
    }

    #[test]
    fn data_center_keeps_its_root() {
        for typed in [
            "https://git.corp.example/bb",
            "https://git.corp.example/bb/rest/api/1.0/",
            "https://git.corp.example/bb/rest/api/latest",
        ] {
            let url = ServerUrl::parse(typed).unwrap();
            assert_eq!(url.as_str(), "https://git.corp.example/bb", "{typed}");
            assert_eq!(url.flavor(), Flavor::DataCenter);
        }
        let url = ServerUrl::parse("https://git.corp.example").unwrap();
        assert_eq!(
            url.join(&["rest", "api", "1.0", "users", "a b"]).as_str(),
            "https://git.corp.example/rest/api/1.0/users/a%20b"
        );
    }

    #[test]
    fn rejects_what_is_not_a_server_url() {
        for bad in [
            "not a url",
            "ftp://x.example",
            "https://user:pw@api.bitbucket.org/2.0",
            "https://x.example/?q=1",
            "/2.0",
            "https://x.example/#frag",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
