//! A connection's identifier.

use std::fmt;

use uuid::Uuid;

/// Time-ordered (UUIDv7), so a listing in key order is a listing by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Only the canonical lower-case hyphenated form: one id, one spelling.
    pub fn parse(text: &str) -> Option<Self> {
        let id = Uuid::try_parse(text).ok()?;
        (id.hyphenated().to_string() == text).then_some(Self(id))
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_spelling() {
        let id = ConnectionId::new();
        assert_eq!(ConnectionId::parse(&id.to_string()), Some(id));
        assert!(ConnectionId::parse(&id.to_string().to_uppercase()).is_none());
        assert!(ConnectionId::parse(&id.to_string().replace('-', "")).is_none());
        assert!(ConnectionId::parse("../etc/passwd").is_none());
    }
}
