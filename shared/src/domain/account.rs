//! The Bitbucket account behind a connection.

use serde::{Deserialize, Serialize};

use crate::text::clean_text;

/// The Bitbucket account the credentials belong to, as Bitbucket reported it.
/// Built only through [`Account::new`], so it always carries an identifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Cloud's `{uuid}`, or a Data Center user's numeric id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Cloud's Atlassian account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Account {
    /// `None` unless Bitbucket named the account by a real identifier. Every
    /// field is cleaned: Bitbucket's answer is untrusted input.
    pub fn new(
        uuid: Option<&str>,
        account_id: Option<&str>,
        display_name: Option<&str>,
        username: Option<&str>,
    ) -> Option<Self> {
        let uuid = uuid.and_then(clean_text);
        let account_id = account_id.and_then(clean_text);
        if uuid.is_none() && account_id.is_none() {
            return None;
        }
        Some(Self {
            uuid,
            account_id,
            display_name: display_name.and_then(clean_text),
            username: username.and_then(clean_text),
        })
    }

    /// Same account only when a real identifier matches: an account we know
    /// nothing about never equals another.
    pub fn same_as(&self, other: &Account) -> bool {
        match (&self.uuid, &other.uuid, &self.account_id, &other.account_id) {
            (Some(a), Some(b), _, _) => a == b,
            (_, _, Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// How the account is named to the user.
    pub fn label(&self) -> String {
        self.username
            .clone()
            .or_else(|| self.display_name.clone())
            .or_else(|| self.uuid.clone())
            .or_else(|| self.account_id.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_compare_by_a_real_identifier_only() {
        let a = Account::new(Some("{1}"), None, None, Some("x")).unwrap();
        let b = Account::new(Some("{2}"), None, None, Some("x")).unwrap();
        assert!(!a.same_as(&b));
        assert!(a.same_as(&a.clone()));
        let by_id = Account::new(None, Some("557058:1"), None, None).unwrap();
        assert!(!a.same_as(&by_id), "no shared identifier: never the same");
        assert!(Account::new(None, None, Some("J Doe"), Some("jdoe")).is_none());
    }

    #[test]
    fn fields_from_bitbucket_are_cleaned_and_capped() {
        let huge = format!("<b>{}</b>\u{202E}\u{0000}", "x".repeat(200_000));
        let account = Account::new(Some("{1}"), None, Some(&huge), None).unwrap();
        let name = account.display_name.unwrap();
        assert!(name.chars().count() <= 200);
        assert!(!name.contains('\u{202E}') && !name.contains('\0'));
    }
}
