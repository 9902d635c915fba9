//! Text that others chose (Bitbucket's answers, a worker's words), made safe to
//! store and to show: one line, no invisible formatting, bounded.

/// The longest a single field copied from a Bitbucket answer may be.
const ACCOUNT_FIELD_MAX_CHARS: usize = 200;

/// Text copied from a Bitbucket answer, made safe to store and show: control
/// and invisible formatting characters dropped, whitespace trimmed, length capped.
pub fn clean_text(text: &str) -> Option<String> {
    let cleaned: String =
        text.chars().filter(|c| !c.is_control() && !is_invisible_format(*c)).take(ACCOUNT_FIELD_MAX_CHARS).collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Text someone else chose (a worker's name and words, a server's header), as it may
/// appear inside a sentence of ours: plain, one line, capped at `max_chars` and in
/// single quotes it cannot close, so it reads as a quotation and never as our words.
pub fn quoted(text: &str, max_chars: usize) -> String {
    let plain: String =
        clean_text(text).unwrap_or_default().chars().filter(|c| !matches!(c, '\'' | '‘' | '’')).collect();
    let mut capped: String = plain.chars().take(max_chars).collect();
    if plain.chars().count() > max_chars {
        capped.push('…');
    }
    format!("'{capped}'")
}

/// Unicode format characters (category Cf) that render as nothing or reorder
/// text: bidi overrides, zero-width characters, the BOM, soft hyphens.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_text_is_plain_capped_and_cannot_close_its_quotes() {
        assert_eq!(quoted("pr-worker", 64), "'pr-worker'");
        assert_eq!(quoted("a'b\u{202e}c\nd", 64), "'abcd'");
        assert_eq!(quoted(&"x".repeat(70), 64), format!("'{}…'", "x".repeat(64)));
        assert_eq!(quoted("<b>Click</b>", 64), "'<b>Click</b>'", "markup stays text: the page never renders HTML");
    }
}
