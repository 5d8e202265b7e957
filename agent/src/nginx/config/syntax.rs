//! nginx configuration syntax: tokenizer and directive tree of one file (`include`s are
//! expanded by `load`).

use super::{lua, ConfigError};

/// Real configs nest a handful of levels; this only stops hostile input.
const MAX_DEPTH: usize = 64;

/// One directive: `name args... ;` or `name args... { children }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// `Some` for block directives (`http`, `server`, `location`, ...).
    pub block: Option<Vec<Directive>>,
    /// 1-based line in the file it came from (for diagnostics).
    pub line: usize,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

/// Tokenizer following ngx_conf_read_token: `#` starts a comment only at the
/// start of a token, quotes only open at the start of a token, and `${var}`
/// braces do not open blocks.
struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    file: &'a str,
}

impl Lexer<'_> {
    fn tokenize(text: &str, file: &str) -> Result<Vec<(Token, usize)>, ConfigError> {
        let mut lexer = Lexer {
            chars: text.chars().peekable(),
            line: 1,
            file,
        };
        let mut tokens: Vec<(Token, usize)> = Vec::new();
        // The name of the directive being read: a Lua block's body is skipped, not tokenized.
        let mut directive: Option<String> = None;
        while let Some(c) = lexer.chars.next() {
            let line = lexer.line;
            let token = match c {
                '\n' => {
                    lexer.line += 1;
                    continue;
                }
                '{' if directive.as_deref().is_some_and(lua::is_lua_block) => {
                    lua::skip_body(&mut lexer.chars, &mut lexer.line).map_err(|reason| {
                        ConfigError::Syntax {
                            file: file.to_string(),
                            line,
                            reason,
                        }
                    })?;
                    tokens.extend([(Token::Open, line), (Token::Close, lexer.line)]);
                    directive = None;
                    continue;
                }
                '#' => {
                    while lexer.chars.next_if(|&c| c != '\n').is_some() {}
                    continue;
                }
                c if c.is_whitespace() => continue,
                ';' => Token::Semicolon,
                '{' => Token::Open,
                '}' => Token::Close,
                '"' | '\'' => Token::Word(lexer.quoted(c)?),
                _ => Token::Word(lexer.bare_word(c)),
            };
            match &token {
                Token::Word(word) if directive.is_none() => directive = Some(word.clone()),
                Token::Word(_) => {}
                _ => directive = None,
            }
            tokens.push((token, line));
        }
        Ok(tokens)
    }

    /// Reads a quoted string whose opening `quote` was consumed.
    fn quoted(&mut self, quote: char) -> Result<String, ConfigError> {
        let start = self.line;
        let mut word = String::new();
        loop {
            match self.chars.next() {
                Some(c) if c == quote => return Ok(word),
                Some('\\') => push_escaped(&mut word, self.chars.next()),
                Some(c) => {
                    self.line += usize::from(c == '\n');
                    word.push(c);
                }
                None => {
                    return Err(ConfigError::Syntax {
                        file: self.file.to_string(),
                        line: start,
                        reason: "unterminated quoted string".into(),
                    })
                }
            }
        }
    }

    /// Reads an unquoted word starting with `first`.
    fn bare_word(&mut self, first: char) -> String {
        let mut word = String::new();
        let mut in_var_braces = false;
        let mut prev = '\0';
        let mut next = Some(first);
        while let Some(c) = next {
            if c == '\\' {
                push_escaped(&mut word, self.chars.next());
            } else {
                in_var_braces = (in_var_braces && c != '}') || (prev == '$' && c == '{');
                word.push(c);
            }
            prev = c;
            next = self.chars.next_if(|&n| {
                let ends_word = n.is_whitespace() || matches!(n, ';' | '{' | '}');
                in_var_braces || (c == '$' && n == '{') || !ends_word
            });
        }
        word
    }
}

/// nginx unescapes `\"`, `\'`, `\\`, `\t`, `\r`, `\n`; other pairs stay verbatim.
fn push_escaped(word: &mut String, next: Option<char>) {
    match next {
        Some(c @ ('"' | '\'' | '\\')) => word.push(c),
        Some('t') => word.push('\t'),
        Some('r') => word.push('\r'),
        Some('n') => word.push('\n'),
        Some(other) => {
            word.push('\\');
            word.push(other);
        }
        None => word.push('\\'),
    }
}

struct TreeBuilder<'a> {
    tokens: std::vec::IntoIter<(Token, usize)>,
    file: &'a str,
}

impl TreeBuilder<'_> {
    fn error(&self, line: usize, reason: &str) -> ConfigError {
        ConfigError::Syntax {
            file: self.file.to_string(),
            line,
            reason: reason.to_string(),
        }
    }

    /// Parses directives until EOF (top level) or the `}` closing this block.
    fn block(
        &mut self,
        depth: usize,
        opened_at: Option<usize>,
    ) -> Result<Vec<Directive>, ConfigError> {
        if depth > MAX_DEPTH {
            return Err(self.error(opened_at.unwrap_or(0), "blocks nested too deeply"));
        }
        let mut out = Vec::new();
        loop {
            let (token, line) = match self.tokens.next() {
                None if opened_at.is_none() => return Ok(out),
                None => return Err(self.error(opened_at.unwrap_or(0), "unclosed block")),
                Some(t) => t,
            };
            let name = match token {
                Token::Close if opened_at.is_some() => return Ok(out),
                Token::Word(name) => name,
                _ => return Err(self.error(line, "unexpected ';', '{' or '}'")),
            };
            out.push(self.directive(name, line, depth)?);
        }
    }

    fn directive(
        &mut self,
        name: String,
        line: usize,
        depth: usize,
    ) -> Result<Directive, ConfigError> {
        let mut args = Vec::new();
        loop {
            match self.tokens.next() {
                Some((Token::Word(w), _)) => args.push(w),
                Some((Token::Semicolon, _)) => {
                    return Ok(Directive {
                        name,
                        args,
                        block: None,
                        line,
                    })
                }
                Some((Token::Open, _)) => {
                    let block = Some(self.block(depth + 1, Some(line))?);
                    return Ok(Directive {
                        name,
                        args,
                        block,
                        line,
                    });
                }
                Some((Token::Close, l)) => return Err(self.error(l, "unexpected '}'")),
                None => return Err(self.error(line, "directive is missing ';'")),
            }
        }
    }
}

/// Parses one file's text into its top-level directives.
pub fn parse_file(text: &str, file: &str) -> Result<Vec<Directive>, ConfigError> {
    let tokens = Lexer::tokenize(text, file)?;
    TreeBuilder {
        tokens: tokens.into_iter(),
        file,
    }
    .block(0, None)
}

/// Minimal glob(3): `*` and `?` (not crossing `/`) and `[...]` classes.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len())
            .take_while(|&i| i == 0 || t[i - 1] != '/')
            .any(|i| glob_at(&p[1..], &t[i..])),
        Some('?') => t.first().is_some_and(|&c| c != '/') && glob_at(&p[1..], &t[1..]),
        Some('[') => match (class_match(&p[1..], t.first().copied()), t.first()) {
            (Some((true, used)), Some(_)) => glob_at(&p[1 + used..], &t[1..]),
            (Some(_), _) => false,
            // No closing ']': treat '[' literally.
            (None, _) => t.first() == Some(&'[') && glob_at(&p[1..], &t[1..]),
        },
        Some(&c) => t.first() == Some(&c) && glob_at(&p[1..], &t[1..]),
    }
}

/// Matches `c` against a class body (after `[`); returns (matched, chars used incl. `]`).
fn class_match(body: &[char], c: Option<char>) -> Option<(bool, usize)> {
    let negate = matches!(body.first(), Some('!' | '^'));
    let mut i = usize::from(negate);
    let mut hit = false;
    let mut first = true;
    while i < body.len() {
        if body[i] == ']' && !first {
            return Some((hit != negate && c.is_some(), i + 1));
        }
        first = false;
        if i + 2 < body.len() && body[i + 1] == '-' && body[i + 2] != ']' {
            hit |= c.is_some_and(|c| (body[i]..=body[i + 2]).contains(&c));
            i += 3;
        } else {
            hit |= c == Some(body[i]);
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Token> {
        Lexer::tokenize(text, "t")
            .unwrap()
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    #[test]
    fn tokenizer_handles_quotes_escapes_comments_and_var_braces() {
        let w = |s: &str| Token::Word(s.to_string());
        assert_eq!(
            words("a \"b # c\" 'd\\'e' f#g # tail\nh ${x}y;"),
            vec![
                w("a"),
                w("b # c"),
                w("d'e"),
                w("f#g"),
                w("h"),
                w("${x}y"),
                Token::Semicolon
            ]
        );
        assert_eq!(
            words("x{y}"),
            vec![w("x"), Token::Open, w("y"), Token::Close]
        );
    }

    #[test]
    fn tree_and_errors() {
        let tree = parse_file("a 1;\nb { c 2; d { } }\n", "f").unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[1].line, 2);
        assert_eq!(tree[1].block.as_ref().unwrap()[1].name, "d");
        for bad in [
            "a {",
            "a",
            "}",
            "a \"x;",
            "a { b; } }",
            "x_by_lua_block { '",
        ] {
            assert!(parse_file(bad, "f").is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn lua_block_bodies_are_skipped() {
        let conf = "location / {\n  content_by_lua_block {\n    -- don't\n    ngx.say(\"}\")\n  }\n                    set_by_lua_block $x { return '{' }\n  proxy_pass http://b;\n}\n";
        let tree = parse_file(conf, "f").unwrap();
        let location = tree[0].block.as_ref().unwrap();
        let names: Vec<&str> = location.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["content_by_lua_block", "set_by_lua_block", "proxy_pass"]
        );
        assert_eq!(location[1].args, ["$x"]);
        assert_eq!(
            (location[2].line, location[0].block.as_deref()),
            (7, Some(&[][..]))
        );
    }

    #[test]
    fn glob() {
        assert!(glob_match(
            "/etc/nginx/conf.d/*.conf",
            "/etc/nginx/conf.d/a.conf"
        ));
        assert!(!glob_match(
            "/etc/nginx/conf.d/*.conf",
            "/etc/nginx/conf.d/x/a.conf"
        ));
        assert!(glob_match("/e/site[s-t]?/[!x]*", "/e/sites1/abc"));
        assert!(!glob_match("/e/[!a]b", "/e/ab"));
    }
}
