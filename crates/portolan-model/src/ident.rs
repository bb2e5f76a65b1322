//! Identifier rules. Blueprint, property and relation identifiers are ASCII so they can appear in
//! URLs, jq paths and SQL-side JSON paths unquoted; entity identifiers also allow Unicode letters and
//! digits, because catalog names come from people and systems in every language.
//!
//! A new identifier must also not pass for another one: user and team identifiers (which grants
//! name) are ASCII, and other entity identifiers are in Unicode's NFKC normal form (no fullwidth or
//! other compatibility letters) and use at most one of the Latin, Greek and Cyrillic alphabets,
//! whose letters look alike. Identifiers stored before these rules stay usable.

use unicode_normalization::UnicodeNormalization;

/// The longest identifier accepted, in characters.
pub const MAX_IDENTIFIER_CHARS: usize = 100;

/// A blueprint, property or relation identifier: ASCII letters, digits and `_ @ = -`, at most 100.
pub fn check_schema_identifier(id: &str) -> Result<(), String> {
    check_length(id)?;
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '=' | '-'))) {
        return Err(format!("'{bad}' is not allowed: use ASCII letters, digits and _ @ = -"));
    }
    Ok(())
}

/// An entity identifier: Unicode letters and digits plus `_ @ . + : = - /`, at most 100
/// characters. `/` separates parts, as in Port (a GitLab project is `group/project`); addresses
/// carry it encoded ([`url_segment`]). Whitespace and control characters are refused, and so are
/// empty parts and parts `.` and `..`, which browsers and proxies fold away.
pub fn check_entity_identifier(id: &str) -> Result<(), String> {
    check_length(id)?;
    if let Some(bad) =
        id.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '@' | '.' | '+' | ':' | '=' | '-' | '/')))
    {
        return Err(format!("{bad:?} is not allowed: use letters, digits and _ @ . + : = - /"));
    }
    if let Some(part) = id.split('/').find(|part| matches!(*part, "" | "." | "..")) {
        return Err(match part {
            "" => "'/' separates parts of an identifier: no part may be empty".to_string(),
            _ => {
                format!("'{part}' is not allowed as an identifier or a part of one (it means a directory in addresses)")
            }
        });
    }
    Ok(())
}

/// An identifier as one segment of a URL path: `/` (and anything else a path gives a meaning)
/// percent-encoded, everything else as it is.
pub fn url_segment(id: &str) -> std::borrow::Cow<'_, str> {
    let special = |c: char| matches!(c, '/' | '%' | '?' | '#') || c.is_whitespace() || c.is_control();
    if !id.contains(special) {
        return id.into();
    }
    let mut out = String::with_capacity(id.len() + 8);
    for c in id.chars() {
        if special(c) {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// What a new user or team identifier must also be: ASCII, so that no two look the same (an email
/// address such as `alice@portolan.dev` fits).
pub fn check_principal_identifier(id: &str) -> Result<(), String> {
    check_entity_identifier(id)?;
    if id.contains('/') {
        return Err("'/' is not allowed: user and team identifiers are one name".into());
    }
    match id.chars().find(|c| !c.is_ascii()) {
        Some(bad) => Err(format!(
            "{bad:?} (U+{:04X}) is not allowed: user and team identifiers use ASCII letters, digits and _ @ . + : = - only",
            u32::from(bad)
        )),
        None => Ok(()),
    }
}

/// What a new entity identifier must also be: in NFKC normal form, and in one of the look-alike
/// alphabets (Latin, Greek, Cyrillic) at most.
pub fn check_new_entity_identifier(id: &str) -> Result<(), String> {
    check_entity_identifier(id)?;
    if !unicode_normalization::is_nfkc(id) {
        let normal: String = id.nfkc().collect();
        return Err(format!("is not in Unicode's normal form (NFKC); write {normal:?} instead"));
    }
    let mut first: Option<(char, &str)> = None;
    for c in id.chars() {
        let Some(alphabet) = look_alike_alphabet(c) else { continue };
        match first {
            None => first = Some((c, alphabet)),
            Some((earlier, seen)) if seen != alphabet => {
                return Err(format!(
                    "mixes {seen} ({earlier:?}) with {alphabet} ({c:?} U+{:04X}): use one alphabet",
                    u32::from(c)
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The alphabet of a letter, among those whose letters are easily taken for each other.
fn look_alike_alphabet(c: char) -> Option<&'static str> {
    match c {
        'a'..='z' | 'A'..='Z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' => Some("Latin"),
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => Some("Greek"),
        '\u{0400}'..='\u{052F}' | '\u{1C80}'..='\u{1C8F}' | '\u{2DE0}'..='\u{2DFF}' | '\u{A640}'..='\u{A69F}' => {
            Some("Cyrillic")
        }
        _ => None,
    }
}

fn check_length(id: &str) -> Result<(), String> {
    let chars = id.chars().count();
    if chars == 0 {
        return Err("must not be empty".into());
    }
    if chars > MAX_IDENTIFIER_CHARS {
        return Err(format!("is {chars} characters long; the limit is {MAX_IDENTIFIER_CHARS}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_identifiers_allow_unicode_letters_and_parts_but_not_spaces() {
        assert!(check_entity_identifier("café-ßervice").is_ok());
        assert!(check_entity_identifier("订单服务").is_ok());
        assert!(check_entity_identifier("alice@example.com").is_ok());
        assert!(check_entity_identifier("group/sub/project").is_ok());
        for bad in ["/a", "a/", "a//b", "a/../b", "a/.", "..", "."] {
            assert!(check_entity_identifier(bad).is_err(), "{bad}");
        }
        assert!(check_entity_identifier("v1.2").is_ok());
        assert!(check_entity_identifier("a b").is_err());
        assert!(check_entity_identifier("").is_err());
        assert!(check_entity_identifier(&"x".repeat(101)).is_err());
        assert!(check_entity_identifier(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn new_identifiers_cannot_pass_for_others() {
        for lookalike in ["\u{FF41}dmin", "\u{0430}dmin", "\u{0391}lpha-team"] {
            assert!(check_principal_identifier(lookalike).is_err(), "{lookalike}");
            assert!(check_new_entity_identifier(lookalike).is_err(), "{lookalike}");
        }
        assert!(check_principal_identifier("alice@portolan.dev").is_ok());
        assert!(check_principal_identifier("team-a_1").is_ok());
        assert!(check_principal_identifier("café").is_err());
        assert!(check_principal_identifier("a/b").is_err());
        // Other entities keep every language, one look-alike alphabet at a time.
        for fine in ["café-ßervice", "订单服务", "заказы-2", "αβγ", "payments", "東京-café"] {
            assert_eq!(check_new_entity_identifier(fine), Ok(()), "{fine}");
        }
        let fullwidth = check_new_entity_identifier("\u{FF41}dmin").expect_err("fullwidth");
        assert!(fullwidth.contains("\"admin\""), "{fullwidth}");
        let mixed = check_new_entity_identifier("p\u{0430}yments").expect_err("mixed");
        assert!(mixed.contains("Latin") && mixed.contains("Cyrillic"), "{mixed}");
        // A decomposed é (e + combining accent) is refused as before: the mark is no letter.
        assert!(check_new_entity_identifier("cafe\u{0301}").is_err());
    }

    #[test]
    fn identifiers_become_one_url_segment() {
        assert_eq!(url_segment("cart-service"), "cart-service");
        assert_eq!(url_segment("group/sub/project"), "group%2Fsub%2Fproject");
        assert_eq!(url_segment("a b%?#"), "a%20b%25%3F%23");
        assert_eq!(url_segment("订单/服务"), "订单%2F服务");
    }

    #[test]
    fn schema_identifiers_are_ascii() {
        assert!(check_schema_identifier("service").is_ok());
        assert!(check_schema_identifier("_team").is_ok());
        assert!(check_schema_identifier("café").is_err());
        assert!(check_schema_identifier("a.b").is_err());
    }
}
