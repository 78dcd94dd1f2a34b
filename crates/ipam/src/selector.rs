//! A subset of Calico's label-selector language, enough for IPPool `nodeSelector`s:
//! `all()`, empty (= all), `has(k)`, `k == 'v'`, `k != 'v'`, `k in {'a','b'}`,
//! `k not in {…}`, `k contains 'v'`, `k starts with 'v'`, `k ends with 'v'`, `!`, `&&`, `||`
//! and parentheses. Strings may use single or double quotes. Anything else is a parse error
//! (we refuse to guess what an unsupported selector means).

use std::collections::BTreeMap;

/// Parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Selector>),
    And(Box<Selector>, Box<Selector>),
    Or(Box<Selector>, Box<Selector>),
}

/// Selector syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    #[source]
    pub reason: SyntaxError,
}

/// Where and why selector text does not parse (offsets are byte offsets into the text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("expected {token:?} at offset {offset}")]
    Expected { token: &'static str, offset: usize },
    #[error("unexpected '!=' at offset {offset}")]
    UnexpectedNotEqual { offset: usize },
    #[error("expected 'in' at offset {offset}")]
    ExpectedIn { offset: usize },
    #[error("expected 'with'")]
    ExpectedWith,
    #[error("expected an operator after {key:?}")]
    ExpectedOperator { key: String },
    #[error("expected a label key at offset {offset}")]
    ExpectedKey { offset: usize },
    #[error("expected a quoted string at offset {offset}")]
    ExpectedString { offset: usize },
    #[error("unexpected input at offset {offset}")]
    Trailing { offset: usize },
    /// The text ends where a quoted string should start.
    #[error("expected a string")]
    StringMissing,
    #[error("unterminated string")]
    Unterminated,
}

impl Selector {
    /// Parse selector text.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser {
            s: s.as_bytes(),
            pos: 0,
        };
        let err = |reason: SyntaxError| SelectorError {
            selector: s.to_string(),
            reason,
        };
        p.ws();
        if p.pos == p.s.len() {
            return Ok(Selector::All);
        }
        let sel = p.or().map_err(err)?;
        p.ws();
        if p.pos != p.s.len() {
            return Err(err(SyntaxError::Trailing { offset: p.pos }));
        }
        Ok(sel)
    }

    /// Evaluate against a label map.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |k: &String| labels.get(k);
        match self {
            Selector::All => true,
            Selector::Has(k) => labels.contains_key(k),
            Selector::Eq(k, v) => get(k) == Some(v),
            Selector::Ne(k, v) => get(k) != Some(v),
            Selector::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            Selector::NotIn(k, vs) => !get(k).is_some_and(|x| vs.contains(x)),
            Selector::Contains(k, v) => get(k).is_some_and(|x| x.contains(v.as_str())),
            Selector::StartsWith(k, v) => get(k).is_some_and(|x| x.starts_with(v.as_str())),
            Selector::EndsWith(k, v) => get(k).is_some_and(|x| x.ends_with(v.as_str())),
            Selector::Not(s) => !s.matches(labels),
            Selector::And(a, b) => a.matches(labels) && b.matches(labels),
            Selector::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

type PResult<T> = Result<T, SyntaxError>;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    /// Consume `tok` (after whitespace) if present.
    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(tok.as_bytes()) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    /// Consume keyword `kw` only if followed by a non-identifier character.
    fn eat_kw(&mut self, kw: &str) -> bool {
        let save = self.pos;
        if self.eat(kw) && !self.s.get(self.pos).is_some_and(|c| is_ident(*c)) {
            return true;
        }
        self.pos = save;
        false
    }

    fn expect(&mut self, tok: &'static str) -> PResult<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(SyntaxError::Expected {
                token: tok,
                offset: self.pos,
            })
        }
    }

    fn or(&mut self) -> PResult<Selector> {
        let mut l = self.and()?;
        while self.eat("||") {
            l = Selector::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> PResult<Selector> {
        let mut l = self.unary()?;
        while self.eat("&&") {
            l = Selector::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }

    fn unary(&mut self) -> PResult<Selector> {
        self.ws();
        if self.s[self.pos..].starts_with(b"!=") {
            return Err(SyntaxError::UnexpectedNotEqual { offset: self.pos });
        }
        if self.eat("!") {
            return Ok(Selector::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let e = self.or()?;
            self.expect(")")?;
            return Ok(e);
        }
        if self.eat_kw("all") {
            self.expect("(")?;
            self.expect(")")?;
            return Ok(Selector::All);
        }
        if self.eat_kw("has") {
            self.expect("(")?;
            let k = self.ident()?;
            self.expect(")")?;
            return Ok(Selector::Has(k));
        }
        let k = self.ident()?;
        if self.eat("==") {
            return Ok(Selector::Eq(k, self.string()?));
        }
        if self.eat("!=") {
            return Ok(Selector::Ne(k, self.string()?));
        }
        if self.eat_kw("in") {
            return Ok(Selector::In(k, self.set()?));
        }
        if self.eat_kw("not") {
            self.ws();
            if !self.eat_kw("in") {
                return Err(SyntaxError::ExpectedIn { offset: self.pos });
            }
            return Ok(Selector::NotIn(k, self.set()?));
        }
        if self.eat_kw("contains") {
            return Ok(Selector::Contains(k, self.string()?));
        }
        if self.eat_kw("starts") {
            if !self.eat_kw("with") {
                return Err(SyntaxError::ExpectedWith);
            }
            return Ok(Selector::StartsWith(k, self.string()?));
        }
        if self.eat_kw("ends") {
            if !self.eat_kw("with") {
                return Err(SyntaxError::ExpectedWith);
            }
            return Ok(Selector::EndsWith(k, self.string()?));
        }
        Err(SyntaxError::ExpectedOperator { key: k })
    }

    fn ident(&mut self) -> PResult<String> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() && is_ident(self.s[self.pos]) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(SyntaxError::ExpectedKey { offset: start });
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn string(&mut self) -> PResult<String> {
        self.ws();
        let q = *self.s.get(self.pos).ok_or(SyntaxError::StringMissing)?;
        if q != b'\'' && q != b'"' {
            return Err(SyntaxError::ExpectedString { offset: self.pos });
        }
        let start = self.pos + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or(SyntaxError::Unterminated)?;
        self.pos = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn set(&mut self) -> PResult<Vec<String>> {
        self.expect("{")?;
        let mut v = Vec::new();
        if self.eat("}") {
            return Ok(v);
        }
        loop {
            v.push(self.string()?);
            if self.eat("}") {
                return Ok(v);
            }
            self.expect(",")?;
        }
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn evaluates_supported_forms() {
        let l = labels(&[("zone", "a"), ("kubernetes.io/hostname", "node-1")]);
        let cases = [
            ("", true),
            ("all()", true),
            ("zone == 'a'", true),
            ("zone == \"b\"", false),
            ("zone != 'b'", true),
            ("has(zone)", true),
            ("!has(rack)", true),
            ("zone in {'a', 'c'}", true),
            ("zone not in {'a'}", false),
            ("kubernetes.io/hostname starts with 'node-'", true),
            ("kubernetes.io/hostname ends with '-2'", false),
            ("kubernetes.io/hostname contains 'de'", true),
            ("zone == 'a' && (has(rack) || zone != 'x')", true),
            ("zone == 'b' || !(zone == 'a')", false),
        ];
        for (s, want) in cases {
            assert_eq!(Selector::parse(s).unwrap().matches(&l), want, "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "zone =",
            "zone == a",
            "has(zone",
            "all",
            "zone == 'a' &&",
            "zone ~ 'x'",
            "'a'",
        ] {
            assert!(Selector::parse(s).is_err(), "{s}");
        }
    }
}
