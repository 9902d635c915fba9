//! The login that goes with a secret.

use crate::text::is_invisible_format;

pub const USERNAME_MAX_CHARS: usize = 255;

/// The login that goes with the secret: a Bitbucket username, an Atlassian
/// account email (API tokens) or a Data Center user slug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("must not be empty");
        }
        if trimmed.chars().count() > USERNAME_MAX_CHARS {
            return Err("must be at most 255 characters");
        }
        if trimmed == "." || trimmed == ".." {
            // It would vanish from a URL path (`/users/..`).
            return Err("must be a username");
        }
        if trimmed.contains(':') {
            // Basic auth splits on the first colon; no Bitbucket login contains one.
            return Err("must not contain ':'");
        }
        if trimmed.chars().any(|c| c.is_control() || c.is_whitespace() || is_invisible_format(c)) {
            return Err("must not contain spaces, control or invisible formatting characters");
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_email(&self) -> bool {
        self.0.contains('@')
    }
}

/// Stored and answered as the login; read back through `parse`, so a stored value
/// that no longer parses is refused where the item is read.
impl serde::Serialize for Username {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Username {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|why| serde::de::Error::custom(format!("username {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_reject_what_basic_auth_cannot_carry() {
        assert!(Username::parse("jdoe").is_ok());
        assert!(Username::parse("j:doe").is_err());
        assert!(Username::parse("j doe").is_err());
        assert!(Username::parse("").is_err());
    }
}
