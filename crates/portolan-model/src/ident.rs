//! Identifier rules. Blueprint, property and relation identifiers are ASCII so they can appear in
//! URLs, jq paths and SQL-side JSON paths unquoted; entity identifiers also allow Unicode letters and
//! digits, because catalog names come from people and systems in every language.

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

/// An entity identifier: Unicode letters and digits plus `_ @ . + : = -`, at most 100 characters.
/// `/`, whitespace and control characters are refused so an identifier is always one URL segment
/// (and `.` and `..`, which browsers and proxies fold away).
pub fn check_entity_identifier(id: &str) -> Result<(), String> {
    check_length(id)?;
    if id == "." || id == ".." {
        return Err(format!("'{id}' is not allowed as an identifier (it means a directory in addresses)"));
    }
    if let Some(bad) =
        id.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '@' | '.' | '+' | ':' | '=' | '-')))
    {
        return Err(format!("{bad:?} is not allowed: use letters, digits and _ @ . + : = -"));
    }
    Ok(())
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
    fn entity_identifiers_allow_unicode_letters_but_not_slashes_or_spaces() {
        assert!(check_entity_identifier("café-ßervice").is_ok());
        assert!(check_entity_identifier("订单服务").is_ok());
        assert!(check_entity_identifier("alice@example.com").is_ok());
        assert!(check_entity_identifier("a/b").is_err());
        assert!(check_entity_identifier("..").is_err() && check_entity_identifier(".").is_err());
        assert!(check_entity_identifier("v1.2").is_ok());
        assert!(check_entity_identifier("a b").is_err());
        assert!(check_entity_identifier("").is_err());
        assert!(check_entity_identifier(&"x".repeat(101)).is_err());
        assert!(check_entity_identifier(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn schema_identifiers_are_ascii() {
        assert!(check_schema_identifier("service").is_ok());
        assert!(check_schema_identifier("_team").is_ok());
        assert!(check_schema_identifier("café").is_err());
        assert!(check_schema_identifier("a.b").is_err());
    }
}
