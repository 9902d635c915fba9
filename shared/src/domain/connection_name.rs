//! What the user calls a connection.

use unicode_normalization::UnicodeNormalization;

use crate::text::is_invisible_format;

pub const NAME_MAX_CHARS: usize = 100;

/// What the user calls the connection; unique per owner, ignoring case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionName(String);

impl ConnectionName {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("must not be empty");
        }
        if trimmed.chars().count() > NAME_MAX_CHARS {
            return Err("must be at most 100 characters");
        }
        if trimmed.chars().any(|c| c.is_control() || is_invisible_format(c)) {
            return Err("must not contain control characters or invisible formatting characters");
        }
        Ok(Self(trimmed.nfc().collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key uniqueness is enforced on.
    pub fn folded(&self) -> String {
        fold_name(&self.0)
    }
}

/// Names that differ only in case or in how their characters are composed are
/// one name: "Straße", "STRASSE" and "strasse" (Unicode full case folding, NFC).
pub fn fold_name(name: &str) -> String {
    let composed: String = name.nfc().collect();
    caseless::default_case_fold_str(&composed).nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_fold_case() {
        assert_eq!(ConnectionName::parse("  Work ").unwrap().as_str(), "Work");
        assert_eq!(ConnectionName::parse("Work").unwrap().folded(), "work");
        assert!(ConnectionName::parse("   ").is_err());
        assert!(ConnectionName::parse(&"x".repeat(101)).is_err());
        assert!(ConnectionName::parse(&"é".repeat(100)).is_ok());
        assert!(ConnectionName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn names_fold_case_and_composition_and_refuse_invisible_characters() {
        let fold = |t: &str| ConnectionName::parse(t).unwrap().folded();
        assert_eq!(fold("Straße"), fold("STRASSE"));
        assert_eq!(fold("Caf\u{0065}\u{0301}"), fold("CAF\u{00C9}"));
        for bad in ["a\u{202E}b", "a\u{200B}b", "\u{FEFF}work", "a\u{0007}b"] {
            assert!(ConnectionName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
