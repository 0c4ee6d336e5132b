//! Glob patterns for `--exclude` (and later `--frozen`), matched against relative path bytes.
//!
//! `*` matches within one path component, `**` across components, `?` one byte other than
//! `/`, `[abc]`, `[a-z]` and `[!x]` a byte class. A pattern without `/` matches an entry's
//! name at any depth (like .gitignore); a pattern with `/` is anchored at the capsule root.
//! A directory that matches is excluded together with everything below it.

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
    basename_only: bool,
}

#[derive(Clone, Debug)]
enum Token {
    Byte(u8),
    AnyByte,
    Star,
    DoubleStar,
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self> {
        let bad = |reason| Error::BadGlob {
            pattern: pattern.to_string(),
            reason,
        };
        if pattern.is_empty() {
            return Err(bad("the pattern is empty"));
        }
        let trimmed = pattern.trim_start_matches('/');
        let b = trimmed.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'*' if b.get(i + 1) == Some(&b'*') => {
                    tokens.push(Token::DoubleStar);
                    i += 2;
                    // `**/` also matches zero directories.
                    if b.get(i) == Some(&b'/') {
                        i += 1;
                    }
                }
                b'*' => {
                    tokens.push(Token::Star);
                    i += 1;
                }
                b'?' => {
                    tokens.push(Token::AnyByte);
                    i += 1;
                }
                b'[' => {
                    let mut j = i + 1;
                    let negated = matches!(b.get(j), Some(b'!') | Some(b'^'));
                    if negated {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = *b.get(j).ok_or_else(|| bad("unclosed '['"))?;
                        if c == b']' && !first {
                            break;
                        }
                        first = false;
                        if b.get(j + 1) == Some(&b'-') && b.get(j + 2).is_some_and(|&e| e != b']') {
                            let end = b[j + 2];
                            if end < c {
                                return Err(bad("a range in '[...]' runs backwards"));
                            }
                            ranges.push((c, end));
                            j += 3;
                        } else {
                            ranges.push((c, c));
                            j += 1;
                        }
                    }
                    tokens.push(Token::Class { negated, ranges });
                    i = j + 1;
                }
                b'\\' => {
                    let c = *b.get(i + 1).ok_or_else(|| bad("a trailing backslash"))?;
                    tokens.push(Token::Byte(c));
                    i += 2;
                }
                c => {
                    tokens.push(Token::Byte(c));
                    i += 1;
                }
            }
        }
        let trimmed_end = trimmed.trim_end_matches('/');
        Ok(Glob {
            source: pattern.to_string(),
            basename_only: !trimmed_end.contains('/') && !pattern.starts_with('/'),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the relative path (no leading `/`) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        let subject = if self.basename_only {
            match path.iter().rposition(|&c| c == b'/') {
                Some(p) => &path[p + 1..],
                None => path,
            }
        } else {
            path
        };
        let tokens = match self.tokens.last() {
            // A trailing `/` in the pattern only says "directory"; compare without it.
            Some(Token::Byte(b'/')) => &self.tokens[..self.tokens.len() - 1],
            _ => &self.tokens[..],
        };
        match_tokens(tokens, subject)
    }
}

fn match_tokens(tokens: &[Token], s: &[u8]) -> bool {
    // Iterative matcher with memo-free backtracking bounded by the number of star tokens:
    // patterns are short and paths bounded, so a simple dynamic table is enough.
    let n = tokens.len();
    let m = s.len();
    // reach[j] = tokens[..i] can match s[..j]
    let mut reach = vec![false; m + 1];
    reach[0] = true;
    for tok in tokens.iter().take(n) {
        let mut next = vec![false; m + 1];
        match tok {
            Token::Star | Token::DoubleStar => {
                let cross = matches!(tok, Token::DoubleStar);
                for j in 0..=m {
                    if reach[j] {
                        next[j] = true;
                        let mut k = j;
                        while k < m && (cross || s[k] != b'/') {
                            k += 1;
                            next[k] = true;
                        }
                    }
                }
            }
            _ => {
                for j in 0..m {
                    if reach[j] && single(tok, s[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[m]
}

fn single(tok: &Token, c: u8) -> bool {
    match tok {
        Token::Byte(b) => *b == c,
        Token::AnyByte => c != b'/',
        Token::Class { negated, ranges } => {
            c != b'/' && (ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
        }
        Token::Star | Token::DoubleStar => false,
    }
}

/// A set of globs; an entry matches the set when any glob matches it.
#[derive(Clone, Debug, Default)]
pub struct GlobSet {
    globs: Vec<Glob>,
}

impl GlobSet {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        Ok(GlobSet {
            globs: patterns
                .iter()
                .map(|p| Glob::new(p.as_ref()))
                .collect::<Result<_>>()?,
        })
    }
    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }
    pub fn matches(&self, path: &[u8]) -> bool {
        self.globs.iter().any(|g| g.matches(path))
    }
    pub fn patterns(&self) -> Vec<String> {
        self.globs.iter().map(|g| g.as_str().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).unwrap().matches(s.as_bytes())
    }

    #[test]
    fn semantics() {
        assert!(m("*.log", "var/log/x.log"));
        assert!(m("*.log", "x.log"));
        assert!(!m("*.log", "x.logs"));
        assert!(m("var/*.log", "var/x.log"));
        assert!(!m("var/*.log", "var/a/x.log"));
        assert!(m("var/**", "var/a/b/c"));
        assert!(m("bin/**", "bin/sh"));
        assert!(!m("bin/**", "sbin/sh"));
        assert!(m("**/cache", "a/b/cache"));
        assert!(m("**/cache", "cache"));
        assert!(m("/tmp", "tmp"));
        assert!(!m("/tmp", "a/tmp"));
        assert!(m("tmp/", "a/tmp"));
        assert!(m("file?.[ch]", "file1.c"));
        assert!(!m("file?.[!ch]", "file1.c"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]x", "dx"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// `--exclude` and `--frozen` take any text: a pattern is refused or matches, never
        /// panics, whatever the pattern and the path (multi-byte characters, brackets,
        /// backslashes, slashes).
        #[test]
        fn any_pattern_and_path_never_panic(
            p in "[\\[\\]!*?/a-c\\\\-µé]{0,12}|\\PC{0,12}",
            path in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
        ) {
            if let Ok(set) = GlobSet::new(&[p]) {
                let _ = set.matches(&path);
            }
        }
    }

    #[test]
    fn errors() {
        assert!(Glob::new("").is_err());
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("[z-a]").is_err());
        assert!(Glob::new("x\\").is_err());
    }
}
