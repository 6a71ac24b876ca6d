//! Templates (`"Hello ${account.name}"`) and branch conditions
//! (`account.status == "locked" && caller_trust != "high"`).
//!
//! Both the loader/validator (to find which variables a flow reads) and the
//! interpreter (to render and evaluate) use this module, so parsing rules live
//! in exactly one place. Columns in errors are 1-based character offsets into
//! the template or condition string, so an author can find the mistake inside
//! a long value.
//!
//! Condition semantics, chosen so that a typo never crashes a call:
//! - An unset variable in a comparison compares as the empty string.
//! - `a == b` etc. compare numerically when both sides parse as integers,
//!   otherwise as strings (byte-wise lexicographic for `<`/`>`).
//! - A bare identifier is true when the variable is set, non-empty and not
//!   `"false"` or `"0"`.
//! - `exists(name)` is true when the variable is set (even if empty).
//! - Bare `true` / `false` are the literal strings "true" / "false", not variables.
//! - `!` binds tighter than `&&`, which binds tighter than `||`;
//!   `!a == b` means `!(a == b)`.

use thiserror::Error;

/// What is wrong with a template or condition, and where (1-based column).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ExprError {
    /// A template's `${` is never closed.
    #[error("`${{` at column {col} has no closing `}}`")]
    UnterminatedVar {
        /// Column of the `$`.
        col: usize,
    },
    /// What stands in `${...}` or in a condition is not a dotted variable name.
    #[error("`{name}` at column {col} is not a variable name; use letters, digits and `_`, with dots between parts (e.g. `account.phone`)")]
    BadName {
        /// The text as written (untrimmed inside `${...}`).
        name: String,
        /// Column where the name starts.
        col: usize,
    },
    /// Rendering met a variable the call has not set; holds its name.
    #[error("variable `{0}` is not set")]
    Unset(String),
    /// A quoted string in a condition runs to the end.
    #[error("string starting at column {col} has no closing quote")]
    UnterminatedString {
        /// Column of the opening quote.
        col: usize,
    },
    /// A token (or the end) where the condition grammar wants something else.
    #[error("unexpected {found} at column {col}; expected {expected}")]
    Unexpected {
        /// The token described for an author (a name, a string, an operator with a
        /// hint such as "use `&&`", or `end of condition`).
        found: String,
        /// Column of that token; one past the end for `end of condition`.
        col: usize,
        /// What would have been accepted there, in words.
        expected: &'static str,
    },
    /// The condition is empty or only whitespace.
    #[error("the condition is empty; write e.g. `account.status == \"locked\"`")]
    Empty,
    /// More than 64 nested `(` / `!`; the bound keeps hostile input off the stack.
    #[error("parentheses nested too deeply at column {col} (limit 64)")]
    TooDeep {
        /// Column of the token that went past the limit.
        col: usize,
    },
    /// A string or number used as a whole condition (`"yes"` instead of `x == "yes"`).
    #[error("a literal alone at column {col} is not a condition; compare it with something (e.g. `x == \"yes\"`)")]
    BareLiteral {
        /// Column of the literal.
        col: usize,
    },
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').enumerate().all(|(i, part)| {
            let mut chars = part.chars();
            match chars.next() {
                None => false,
                Some(c) if i == 0 && !(c.is_ascii_alphabetic() || c == '_') => false,
                Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => false,
                _ => chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
            }
        })
}

/// Template pieces: literal text or a variable reference.
enum Piece<'a> {
    Text(&'a str),
    Dollar, // from the `$${` escape: a literal `$`, the `{` follows as text
    Var(&'a str),
}

fn pieces(t: &str) -> Result<Vec<Piece<'_>>, ExprError> {
    let mut out = Vec::new();
    let mut start = 0; // byte offset of pending literal text
    let mut i = 0;
    let bytes = t.as_bytes();
    while i < bytes.len() {
        if t[i..].starts_with("$${") {
            out.push(Piece::Text(&t[start..i]));
            out.push(Piece::Dollar);
            i += 2; // keep the `{` as literal text
            start = i;
        } else if t[i..].starts_with("${") {
            out.push(Piece::Text(&t[start..i]));
            let col = t[..i].chars().count() + 1;
            let rest = &t[i + 2..];
            let Some(end) = rest.find('}') else {
                return Err(ExprError::UnterminatedVar { col });
            };
            let name = &rest[..end];
            let trimmed = name.trim();
            if !is_name(trimmed) {
                return Err(ExprError::BadName {
                    name: name.to_string(),
                    col: col + 2,
                });
            }
            out.push(Piece::Var(trimmed));
            i += 2 + end + 1;
            start = i;
        } else {
            // Advance one whole character (never split UTF-8).
            i += t[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out.push(Piece::Text(&t[start..]));
    Ok(out)
}

/// Variables referenced by `${name}` / `${account.field}` in a template; `$${` escapes.
/// Each name appears once, in order of first use.
pub fn template_vars(t: &str) -> Result<Vec<String>, ExprError> {
    let mut out: Vec<String> = Vec::new();
    for p in pieces(t)? {
        if let Piece::Var(v) = p {
            if !out.iter().any(|o| o == v) {
                out.push(v.to_string());
            }
        }
    }
    Ok(out)
}

/// Render a template. An unset variable is an error ([`ExprError::Unset`]) rather
/// than an empty string, so that a caller never hears a half-built sentence.
pub fn render(t: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExprError> {
    let mut out = String::with_capacity(t.len());
    for p in pieces(t)? {
        match p {
            Piece::Text(s) => out.push_str(s),
            Piece::Dollar => out.push('$'),
            Piece::Var(v) => match lookup(v) {
                Some(val) => out.push_str(&val),
                None => return Err(ExprError::Unset(v.to_string())),
            },
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Var(String),
    Lit(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Or(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Cmp(Operand, CmpOp, Operand),
    Truthy(String),
    Exists(String),
}

/// A parsed branch condition. Parse once at load time, evaluate per call.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    root: Node,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(String),
    Op(CmpOp),
    And,
    Or,
    Not,
    LParen,
    RParen,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("name `{s}`"),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Int(s) => format!("number {s}"),
        Tok::Op(op) => format!(
            "`{}`",
            match op {
                CmpOp::Eq => "==",
                CmpOp::Ne => "!=",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
            }
        ),
        Tok::And => "`&&`".into(),
        Tok::Or => "`||`".into(),
        Tok::Not => "`!`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
    }
}

/// Tokens with their 1-based column.
fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((Tok::LParen, col));
                i += 1;
            }
            ')' => {
                out.push((Tok::RParen, col));
                i += 1;
            }
            '&' | '|' if next == Some(c) => {
                out.push((if c == '&' { Tok::And } else { Tok::Or }, col));
                i += 2;
            }
            '=' if next == Some('=') => {
                out.push((Tok::Op(CmpOp::Eq), col));
                i += 2;
            }
            '!' if next == Some('=') => {
                out.push((Tok::Op(CmpOp::Ne), col));
                i += 2;
            }
            '!' => {
                out.push((Tok::Not, col));
                i += 1;
            }
            '<' | '>' => {
                let eq = next == Some('=');
                let op = match (c, eq) {
                    ('<', false) => CmpOp::Lt,
                    ('<', true) => CmpOp::Le,
                    ('>', false) => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                out.push((Tok::Op(op), col));
                i += if eq { 2 } else { 1 };
            }
            '"' | '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(ExprError::UnterminatedString { col }),
                        Some(&q) if q == c => break,
                        Some('\\') if chars.get(j + 1).is_some() => {
                            s.push(chars[j + 1]);
                            j += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), col));
                i = j + 1;
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                out.push((Tok::Int(chars[i..j].iter().collect()), col));
                i = j;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric() || chars[j] == '_' || chars[j] == '.')
                {
                    j += 1;
                }
                let name: String = chars[i..j].iter().collect();
                if !is_name(&name) {
                    return Err(ExprError::BadName { name, col });
                }
                out.push((Tok::Ident(name), col));
                i = j;
            }
            other => {
                let found = match other {
                    '=' => "`=` (use `==` to compare)".to_string(),
                    '&' => "`&` (use `&&`)".to_string(),
                    '|' => "`|` (use `||`)".to_string(),
                    _ => format!("`{other}`"),
                };
                return Err(ExprError::Unexpected {
                    found,
                    col,
                    expected: "a name, a quoted string, a number, `(`, `!` or `exists(...)`",
                });
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end_col: usize,
    /// Nesting depth of `(` and `!`, bounded so hostile input cannot overflow the stack.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn unexpected(&self, expected: &'static str) -> ExprError {
        match self.toks.get(self.pos) {
            Some((t, col)) => ExprError::Unexpected {
                found: describe(t),
                col: *col,
                expected,
            },
            None => ExprError::Unexpected {
                found: "end of condition".into(),
                col: self.end_col,
                expected,
            },
        }
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Node::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut left = self.not()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.not()?;
            left = Node::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > 64 {
            let col = self.toks.get(self.pos).map_or(self.end_col, |t| t.1);
            return Err(ExprError::TooDeep { col });
        }
        Ok(())
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        if self.peek() == Some(&Tok::Not) {
            self.enter()?;
            self.pos += 1;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let r = match self.peek() {
            Some(Tok::Ident(n)) if n == "true" || n == "false" => Operand::Lit(n.clone()),
            Some(Tok::Ident(n)) => Operand::Var(n.clone()),
            Some(Tok::Str(s)) | Some(Tok::Int(s)) => Operand::Lit(s.clone()),
            _ => return Err(self.unexpected("a name, a quoted string or a number")),
        };
        self.pos += 1;
        Ok(r)
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        match self.peek() {
            Some(Tok::LParen) => {
                self.enter()?;
                self.pos += 1;
                let inner = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(self.unexpected("`)`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Ident(n))
                if n == "exists"
                    && self.toks.get(self.pos + 1).map(|t| &t.0) == Some(&Tok::LParen) =>
            {
                self.pos += 2;
                let name = match self.peek() {
                    Some(Tok::Ident(n)) => n.clone(),
                    _ => return Err(self.unexpected("a variable name inside `exists(...)`")),
                };
                self.pos += 1;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(self.unexpected("`)` closing `exists(`"));
                }
                self.pos += 1;
                Ok(Node::Exists(name))
            }
            Some(Tok::Ident(_)) | Some(Tok::Str(_)) | Some(Tok::Int(_)) => {
                let col = self.toks[self.pos].1;
                let left = self.operand()?;
                if let Some(Tok::Op(op)) = self.peek() {
                    let op = *op;
                    self.pos += 1;
                    let right = self.operand()?;
                    return Ok(Node::Cmp(left, op, right));
                }
                match left {
                    Operand::Var(n) => Ok(Node::Truthy(n)),
                    Operand::Lit(_) => Err(ExprError::BareLiteral { col }),
                }
            }
            _ => {
                Err(self.unexpected("a name, a quoted string, a number, `(`, `!` or `exists(...)`"))
            }
        }
    }
}

fn collect_vars(n: &Node, out: &mut Vec<String>) {
    let mut push = |s: &String| {
        if !out.contains(s) {
            out.push(s.clone());
        }
    };
    match n {
        Node::Or(a, b) | Node::And(a, b) => {
            collect_vars(a, out);
            collect_vars(b, out);
        }
        Node::Not(a) => collect_vars(a, out),
        Node::Cmp(a, _, b) => {
            for o in [a, b] {
                if let Operand::Var(v) = o {
                    push(v);
                }
            }
        }
        Node::Truthy(v) | Node::Exists(v) => push(v),
    }
}

fn eval_node(n: &Node, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    let value = |o: &Operand| match o {
        Operand::Var(v) => lookup(v).unwrap_or_default(),
        Operand::Lit(s) => s.clone(),
    };
    match n {
        Node::Or(a, b) => eval_node(a, lookup) || eval_node(b, lookup),
        Node::And(a, b) => eval_node(a, lookup) && eval_node(b, lookup),
        Node::Not(a) => !eval_node(a, lookup),
        Node::Exists(v) => lookup(v).is_some(),
        Node::Truthy(v) => lookup(v).is_some_and(|s| !s.is_empty() && s != "false" && s != "0"),
        Node::Cmp(a, op, b) => {
            let (l, r) = (value(a), value(b));
            let ord = match (l.trim().parse::<i64>(), r.trim().parse::<i64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => l.cmp(&r),
            };
            match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => ord.is_ne(),
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Ge => ord.is_ge(),
            }
        }
    }
}

impl Condition {
    /// Parse a condition written in a flow's `branch`; errors carry the
    /// 1-based column inside `src`.
    pub fn parse(src: &str) -> Result<Condition, ExprError> {
        let toks = lex(src)?;
        if toks.is_empty() {
            return Err(ExprError::Empty);
        }
        let mut p = Parser {
            toks,
            pos: 0,
            depth: 0,
            end_col: src.chars().count() + 1,
        };
        let root = p.or()?;
        if p.pos < p.toks.len() {
            return Err(p.unexpected("`&&`, `||` or the end of the condition"));
        }
        Ok(Condition { root })
    }

    /// Variables the condition reads, each once, in order of first use.
    pub fn vars(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_vars(&self.root, &mut out);
        out
    }

    /// Evaluate against the call's variables. Never fails today (unset compares
    /// as ""), but returns `Result` so stricter rules can be added without an API change.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<bool, ExprError> {
        Ok(eval_node(&self.root, lookup))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn eval(src: &str, pairs: &[(&str, &str)]) -> bool {
        let e = env(pairs);
        Condition::parse(src)
            .unwrap_or_else(|err| panic!("{src}: {err}"))
            .eval(&|k| e.get(k).cloned())
            .unwrap()
    }

    fn perr(src: &str) -> String {
        Condition::parse(src).unwrap_err().to_string()
    }

    #[test]
    fn template_vars_in_order_deduplicated() {
        assert_eq!(
            template_vars("Hi ${name}, ${account.phone} ${name}").unwrap(),
            vec!["name", "account.phone"]
        );
        assert!(template_vars("plain text").unwrap().is_empty());
        assert_eq!(template_vars("${ a }").unwrap(), vec!["a"]);
    }

    #[test]
    fn template_escape_is_not_a_var() {
        assert!(template_vars("cost $${x}").unwrap().is_empty());
        assert_eq!(render("cost $${x}", &|_| None).unwrap(), "cost ${x}");
        assert_eq!(render("a $ b $x", &|_| None).unwrap(), "a $ b $x");
        assert_eq!(
            render("$${a}${b}", &|k| (k == "b").then(|| "B".to_string())).unwrap(),
            "${a}B"
        );
    }

    #[test]
    fn template_errors_give_column() {
        assert_eq!(
            template_vars("ab ${name").unwrap_err(),
            ExprError::UnterminatedVar { col: 4 }
        );
        assert_eq!(
            template_vars("x${}").unwrap_err(),
            ExprError::BadName {
                name: String::new(),
                col: 4
            }
        );
        let e = template_vars("${9lives}").unwrap_err();
        assert!(e.to_string().contains("column 3"), "{e}");
        assert!(template_vars("${a..b}").is_err());
        assert!(template_vars("${a.}").is_err());
        assert!(template_vars("${a b}").is_err());
        // Column counts characters, not bytes.
        assert_eq!(
            template_vars("é ${").unwrap_err(),
            ExprError::UnterminatedVar { col: 3 }
        );
    }

    #[test]
    fn render_substitutes_and_reports_unset() {
        let e = env(&[("caller", "+15551234"), ("account.id", "42")]);
        let look = |k: &str| e.get(k).cloned();
        assert_eq!(
            render("n=${caller}&id=${account.id}", &look).unwrap(),
            "n=+15551234&id=42"
        );
        assert_eq!(
            render("${missing}", &look).unwrap_err(),
            ExprError::Unset("missing".into())
        );
        assert_eq!(
            ExprError::Unset("missing".into()).to_string(),
            "variable `missing` is not set"
        );
        assert_eq!(
            render("ünïcode ${caller}", &look).unwrap(),
            "ünïcode +15551234"
        );
    }

    #[test]
    fn comparisons_numeric_and_string() {
        assert!(eval("a == \"x\"", &[("a", "x")]));
        assert!(eval("a == 'x'", &[("a", "x")]));
        assert!(!eval("a != 'x'", &[("a", "x")]));
        assert!(eval("n < 10", &[("n", "9")]));
        // numeric: 9 < 10; string compare would say "9" > "10"
        assert!(!eval("n > 10", &[("n", "9")]));
        assert!(eval("n >= 9", &[("n", "9")]));
        assert!(eval("n <= -1", &[("n", "-5")]));
        assert!(eval("n == 007", &[("n", "7")]));
        // string compare when one side is not a number
        assert!(eval("s < \"b\"", &[("s", "a")]));
        assert!(eval("s > \"10\"", &[("s", "9x")]));
        assert!(eval("a == b", &[("a", "q"), ("b", "q")]));
    }

    #[test]
    fn unset_compares_as_empty() {
        assert!(eval("missing == \"\"", &[]));
        assert!(!eval("missing == \"x\"", &[]));
        assert!(eval("missing != \"x\"", &[]));
    }

    #[test]
    fn truthiness_of_bare_identifier() {
        assert!(eval("flag", &[("flag", "yes")]));
        assert!(!eval("flag", &[("flag", "")]));
        assert!(!eval("flag", &[("flag", "false")]));
        assert!(!eval("flag", &[("flag", "0")]));
        assert!(!eval("flag", &[]));
        assert!(eval("!flag", &[]));
    }

    #[test]
    fn exists_is_set_even_if_empty() {
        assert!(eval("exists(x)", &[("x", "")]));
        assert!(!eval("exists(x)", &[]));
        assert!(eval("!exists(account.id)", &[]));
        // `exists` without parentheses is an ordinary variable name.
        assert!(eval("exists", &[("exists", "1")]));
    }

    #[test]
    fn true_false_are_literals() {
        assert!(eval("ok == true", &[("ok", "true")]));
        assert!(!eval("ok == false", &[("ok", "true")]));
        assert!(Condition::parse("ok == true").unwrap().vars() == vec!["ok"]);
    }

    #[test]
    fn precedence_and_parentheses() {
        // && binds tighter than ||
        assert!(eval("a || b && c", &[("a", "1")]));
        assert!(!eval("(a || b) && c", &[("a", "1")]));
        assert!(eval("!a && b", &[("b", "1")]));
        assert!(!eval("!(a || b)", &[("b", "1")]));
        assert!(eval("!a == 'x'", &[("a", "y")]));
        assert!(eval(
            "account.status == \"locked\" && caller_trust != \"high\"",
            &[("account.status", "locked"), ("caller_trust", "low")]
        ));
        assert!(!eval(
            "account.status == \"locked\" && caller_trust != \"high\"",
            &[("account.status", "locked"), ("caller_trust", "high")]
        ));
        assert!(eval("((a))", &[("a", "1")]));
    }

    #[test]
    fn string_escapes() {
        assert!(eval(r#"a == "say \"hi\"""#, &[("a", "say \"hi\"")]));
        assert!(eval(r#"a == 'it\'s'"#, &[("a", "it's")]));
        assert!(eval("a == 'x && y'", &[("a", "x && y")]));
    }

    #[test]
    fn vars_lists_each_once() {
        let c = Condition::parse("a == b || exists(c) && !a && d.e > 3").unwrap();
        assert_eq!(c.vars(), vec!["a", "b", "c", "d.e"]);
    }

    #[test]
    fn parse_errors_say_what_and_where() {
        assert_eq!(perr(""), ExprError::Empty.to_string());
        assert_eq!(perr("   "), ExprError::Empty.to_string());
        assert_eq!(
            perr("a = 'x'"),
            "unexpected `=` (use `==` to compare) at column 3; expected a name, a quoted string, a number, `(`, `!` or `exists(...)`"
        );
        assert_eq!(
            perr("a & b"),
            "unexpected `&` (use `&&`) at column 3; expected a name, a quoted string, a number, `(`, `!` or `exists(...)`"
        );
        assert_eq!(
            perr("a == 'x"),
            "string starting at column 6 has no closing quote"
        );
        assert_eq!(
            perr("a =="),
            "unexpected end of condition at column 5; expected a name, a quoted string or a number"
        );
        assert_eq!(
            perr("(a || b"),
            "unexpected end of condition at column 8; expected `)`"
        );
        assert_eq!(
            perr("a b"),
            "unexpected name `b` at column 3; expected `&&`, `||` or the end of the condition"
        );
        assert_eq!(
            perr("\"x\""),
            "a literal alone at column 1 is not a condition; compare it with something (e.g. `x == \"yes\"`)"
        );
        assert_eq!(
            perr("exists(\"x\")"),
            "unexpected string \"x\" at column 8; expected a variable name inside `exists(...)`"
        );
        assert!(perr("a == == b").contains("column 6"));
        assert!(perr("a.").contains("`a.`"));
        assert!(perr("a @ b").contains("`@` at column 3"));
        assert!(perr("a ==\u{e9}").contains("column 5"));
        assert!(perr(")").contains("column 1"));
        assert!(perr("exists(a").contains("closing `exists(`"));
    }

    #[test]
    fn never_panics_on_garbage() {
        let junk = [
            "((((", "))))", "!!!!", "'", "\"", "${", "$${", "&&", "||", "a ||", "!", "exists(",
            "exists()", "-", "--1", "a < < b", "é", "\u{0}", "a == 'é",
        ];
        for j in junk {
            let _ = Condition::parse(j);
            let _ = template_vars(j);
            let _ = render(j, &|_| Some(String::new()));
        }
        let ok = format!("{}a{}", "(".repeat(60), ")".repeat(60));
        assert!(Condition::parse(&ok).is_ok());
        let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(
            Condition::parse(&deep).unwrap_err(),
            ExprError::TooDeep { col: 65 }
        );
        assert!(Condition::parse(&"!".repeat(100_000)).is_err());
    }
}
