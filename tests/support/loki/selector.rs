//! Loki's label selector syntax, for pushed label sets (strict) and `query_range` queries.
use super::Labels;

/// `{a="1", b="2"}` → map. Push labels (`strict`) must be sorted and unique with valid names.
pub(super) fn parse_selector(text: &str, strict: bool) -> Result<Labels, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("not {...}")?;
    let mut labels = Labels::new();
    let mut previous: Option<String> = None;
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or("expected =")?;
        let name = name.trim();
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid {
            return Err(format!("invalid label name {name:?}"));
        }
        let after = after
            .trim_start()
            .strip_prefix('"')
            .ok_or("expected quoted value")?;
        let (mut value, mut end, mut escaped) = (String::new(), None, false);
        for (i, c) in after.char_indices() {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false
                }
                (true, c) => {
                    value.push(c);
                    escaped = false
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        let end = end.ok_or("unterminated value")?;
        if strict {
            if previous.as_deref().is_some_and(|p| p >= name) {
                return Err(format!("labels not sorted and unique at {name:?}"));
            }
            previous = Some(name.to_owned());
        }
        labels.insert(name.to_owned(), value);
        rest = after[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    if strict && labels.is_empty() {
        return Err("at least one label pair is required per stream".into());
    }
    Ok(labels)
}
