//! The bodies of OpenResty's `*_by_lua_block { ... }` directives are Lua, not nginx syntax:
//! a `'` in a Lua comment or a `}` in a Lua string would throw the nginx tokenizer off and
//! lose the whole configuration. They are skipped with Lua's own rules, as ngx_lua does.
use std::{iter::Peekable, str::Chars};

/// Directives whose block is Lua code.
pub(super) fn is_lua_block(directive: &str) -> bool {
    directive.ends_with("_by_lua_block")
}

/// Consumes a Lua block body up to and including its closing `}` (the `{` was consumed),
/// counting newlines into `line`.
pub(super) fn skip_body(chars: &mut Peekable<Chars<'_>>, line: &mut usize) -> Result<(), String> {
    let mut depth = 1usize;
    while let Some(c) = chars.next() {
        match c {
            '\n' => *line += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            '"' | '\'' => skip_string(chars, c, line)?,
            '[' => {
                if let Some(level) = long_bracket_level(chars) {
                    skip_long_bracket(chars, level, line)?;
                }
            }
            '-' if chars.next_if_eq(&'-').is_some() => skip_comment(chars, line)?,
            _ => {}
        }
    }
    Err("unterminated Lua block".into())
}

/// After a `[`: `Some(n)` when `=`×n then `[` follow (a long bracket), consuming them.
fn long_bracket_level(chars: &mut Peekable<Chars<'_>>) -> Option<usize> {
    equals_then(chars, '[', None)
}

/// `=`×n then `bracket` ahead, with n equal to `level` when given: consumes them, `Some(n)`.
fn equals_then(
    chars: &mut Peekable<Chars<'_>>,
    bracket: char,
    level: Option<usize>,
) -> Option<usize> {
    let mut ahead = chars.clone();
    let mut n = 0;
    while ahead.next_if_eq(&'=').is_some() {
        n += 1;
    }
    if level.is_some_and(|level| level != n) {
        return None;
    }
    ahead.next_if_eq(&bracket)?;
    *chars = ahead;
    Some(n)
}

fn skip_long_bracket(
    chars: &mut Peekable<Chars<'_>>,
    level: usize,
    line: &mut usize,
) -> Result<(), String> {
    while let Some(c) = chars.next() {
        match c {
            '\n' => *line += 1,
            ']' if equals_then(chars, ']', Some(level)).is_some() => return Ok(()),
            _ => {}
        }
    }
    Err("unterminated Lua long string or comment".into())
}

fn skip_string(
    chars: &mut Peekable<Chars<'_>>,
    quote: char,
    line: &mut usize,
) -> Result<(), String> {
    while let Some(c) = chars.next() {
        match c {
            // The guard consumes the escaped character; an escaped newline continues the string.
            '\\' if chars.next() == Some('\n') => *line += 1,
            '\\' => {}
            '\n' => return Err("unterminated Lua string".into()),
            c if c == quote => return Ok(()),
            _ => {}
        }
    }
    Err("unterminated Lua string".into())
}

/// After `--`: a long comment `--[[ ... ]]` or one to the end of the line.
fn skip_comment(chars: &mut Peekable<Chars<'_>>, line: &mut usize) -> Result<(), String> {
    if chars.next_if_eq(&'[').is_some() {
        if let Some(level) = long_bracket_level(chars) {
            return skip_long_bracket(chars, level, line);
        }
    }
    while chars.next_if(|&c| c != '\n').is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(body: &str) -> Result<(String, usize), String> {
        let mut chars = body.chars().peekable();
        let mut line = 1;
        skip_body(&mut chars, &mut line)?;
        Ok((chars.collect(), line))
    }

    #[test]
    fn braces_in_lua_strings_and_comments_do_not_count() {
        let body = "\n  -- don't { count\n  local t = { a = \"}\", b = '{' }\n  \
                    local s = [==[ ]] } ]==] --[[ } \n ]] ngx.say(t.a)\n} rest";
        assert_eq!(skip(body).unwrap(), (" rest".to_string(), 6));
    }

    #[test]
    fn unterminated_bodies_are_errors() {
        for bad in ["ngx.say('x')", "s = \"}", "--[[ }", "x = [[ }"] {
            assert!(skip(bad).is_err(), "{bad:?}");
        }
    }
}
