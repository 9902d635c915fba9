//! Who owns connections.

pub const OWNER_MAX_BYTES: usize = 256;

/// The authenticated principal (`sub` claim) that owns connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// `None` for a subject no identity provider would issue (empty, huge, control characters).
    pub fn parse(sub: &str) -> Option<Self> {
        let ok = !sub.is_empty() && sub.len() <= OWNER_MAX_BYTES && !sub.chars().any(char::is_control);
        ok.then(|| Self(sub.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
