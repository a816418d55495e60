//! Label and field selectors: parsing, printing and matching, with the semantics of
//! `k8s.io/apimachinery/pkg/labels` and `k8s.io/apimachinery/pkg/fields`.
//!
//! A [`LabelSelector`] is a conjunction of requirements on an object's labels, parsed from the
//! `labelSelector` query parameter (`app=web,tier in (a,b),!canary,replicas>1`) or built from a
//! `metav1.LabelSelector` (`matchLabels` + `matchExpressions`). A [`FieldSelector`] is a
//! conjunction of `field=value` / `field!=value` terms, parsed from `fieldSelector`, matched
//! against [`field_value`].
//!
//! Promises (each has a test below):
//! - the empty string parses to the selector that matches everything, for both kinds;
//! - keys are validated as Kubernetes qualified names and values as label values; a bad one is
//!   an error naming the offending input, never a panic;
//! - `notin` and `!=` match objects that do not have the key at all; `in`, `=`, `>` and `<`
//!   require it; `>` and `<` compare as 64-bit integers and never match a non-integer label;
//! - [`Display`](std::fmt::Display) prints a canonical form, requirements sorted by key and
//!   set values sorted, and that form parses back to an equal selector;
//! - field selector values use Kubernetes escaping (`\\`, `\,`, `\=`), both when parsed and when
//!   printed.
//!
//! Where we differ from Kubernetes: `k==v` is stored (and printed) as `k=v`, its exact
//! equivalent. Not promised: the per-kind list of selectable fields and their conversions
//! (`status.successful` of a Job, say); [`field_value`] reads the JSON path as written, with
//! the few defaults listed on it. Kubernetes' `labels.Nothing()` (a nil `metav1.LabelSelector`)
//! is the caller's business: [`LabelSelector::from_meta`] takes a selector that exists.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::Value;

use crate::validation::{is_qualified_name_part, matches_dns1123_subdomain};

/// Why a label or field selector was rejected. Each message is one line and names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector string does not follow the grammar.
    #[error("unable to parse requirement in {selector:?}: found '{found}', expected: {expected}")]
    Syntax {
        /// The whole selector string.
        selector: String,
        /// The token found where something else was expected.
        found: String,
        /// What the parser expected there.
        expected: &'static str,
    },
    /// A label key is not a valid qualified name (`[prefix/]name`).
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A label value is not a valid label value.
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `matchExpressions` operator is not `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[error("{operator:?} is not a valid label selector operator (key {key:?})")]
    InvalidOperator {
        /// The key of the expression.
        key: String,
        /// The offending operator.
        operator: String,
    },
    /// The operator was given the wrong number or kind of values.
    #[error("invalid values {values:?} for key {key:?}: {reason}")]
    InvalidValues {
        /// The key of the requirement.
        key: String,
        /// The values given.
        values: Vec<String>,
        /// What the operator requires.
        reason: &'static str,
    },
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector string.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A field selector value has a backslash that escapes nothing Kubernetes knows.
    #[error("invalid field selector: invalid escape sequence: {sequence} in value {value:?}")]
    InvalidEscape {
        /// The escape sequence (or a lone trailing backslash).
        sequence: String,
        /// The raw value it appears in.
        value: String,
    },
    /// A field selector value contains an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {character} in value {value:?}")]
    UnescapedCharacter {
        /// The character that should have been escaped.
        character: char,
        /// The raw value it appears in.
        value: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// The operator of one [`LabelRequirement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOperator {
    /// `k=v` or `k==v`: the label exists and equals the value.
    Equals,
    /// `k!=v`: the label is absent or differs from the value.
    NotEquals,
    /// `k in (a,b)`: the label exists and is one of the values.
    In,
    /// `k notin (a,b)`: the label is absent or none of the values.
    NotIn,
    /// `k`: the label exists.
    Exists,
    /// `!k`: the label does not exist.
    DoesNotExist,
    /// `k>n`: the label exists, is an integer, and is greater than `n`.
    GreaterThan,
    /// `k<n`: the label exists, is an integer, and is less than `n`.
    LessThan,
}

/// One requirement of a [`LabelSelector`]: a key, an operator and its values.
///
/// Built only by [`LabelSelector::parse`] and [`LabelSelector::from_meta`], so the key, the values
/// and their number always satisfy the operator's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    key: String,
    operator: LabelOperator,
    /// Sorted and without duplicates.
    values: Vec<String>,
}

impl LabelRequirement {
    /// Validates and builds a requirement, like `labels.NewRequirement`.
    fn new(key: &str, operator: LabelOperator, mut values: Vec<String>) -> Result<Self, SelectorError> {
        validate_key(key)?;
        let bad_values = |reason| SelectorError::InvalidValues { key: key.to_owned(), values: values.clone(), reason };
        match operator {
            LabelOperator::In | LabelOperator::NotIn if values.is_empty() => {
                return Err(bad_values("for 'in', 'notin' operators, values set can't be empty"));
            }
            LabelOperator::Equals | LabelOperator::NotEquals if values.len() != 1 => {
                return Err(bad_values("exact-match compatibility requires one single value"));
            }
            LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => {
                return Err(bad_values("values set must be empty for exists and does not exist"));
            }
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                if values.len() != 1 {
                    return Err(bad_values("for 'Gt', 'Lt' operators, exactly one value is required"));
                }
                if values.iter().any(|v| v.parse::<i64>().is_err()) {
                    return Err(bad_values("for 'Gt', 'Lt' operators, the value must be an integer"));
                }
            }
            _ => {}
        }
        for value in &values {
            validate_value(key, value)?;
        }
        values.sort();
        values.dedup();
        Ok(Self { key: key.to_owned(), operator, values })
    }

    /// The label key this requirement is about.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> LabelOperator {
        self.operator
    }

    /// The values, sorted and deduplicated (empty for `Exists` and `DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set, given as a lookup function, satisfies this requirement.
    fn matches_with<'a>(&self, get: &impl Fn(&str) -> Option<&'a str>) -> bool {
        let value = get(&self.key);
        let in_values = |v: &str| self.values.iter().any(|w| w == v);
        match self.operator {
            LabelOperator::Equals | LabelOperator::In => value.is_some_and(in_values),
            LabelOperator::NotEquals | LabelOperator::NotIn => !value.is_some_and(in_values),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let Some(Ok(have)) = value.map(str::parse::<i64>) else {
                    return false;
                };
                let Some(Ok(bound)) = self.values.first().map(|v| v.parse::<i64>()) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan { have > bound } else { have < bound }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or_default();
        match self.operator {
            LabelOperator::Exists => write!(f, "{key}"),
            LabelOperator::DoesNotExist => write!(f, "!{key}"),
            LabelOperator::Equals => write!(f, "{key}={first}"),
            LabelOperator::NotEquals => write!(f, "{key}!={first}"),
            LabelOperator::GreaterThan => write!(f, "{key}>{first}"),
            LabelOperator::LessThan => write!(f, "{key}<{first}"),
            LabelOperator::In => write!(f, "{key} in ({})", self.values.join(",")),
            LabelOperator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
        }
    }
}

/// A label selector: every requirement must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (stable), as Kubernetes sorts them.
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses the `labelSelector` syntax: comma-separated `k=v`, `k==v`, `k!=v`, `k`, `!k`,
    /// `k in (a,b)`, `k notin (a,b)`, `k>1`, `k<3`, with whitespace allowed between tokens.
    /// The empty string is the selector that matches everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s);
        let mut parser = Parser { selector: s, tokens, pos: 0 };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Converts a `metav1.LabelSelector`, like `metav1.LabelSelectorAsSelector`: each
    /// `matchLabels` entry is `k=v`; `matchExpressions` take `In` and `NotIn` (with at least one
    /// value) and `Exists` and `DoesNotExist` (with none). A selector with neither matches
    /// everything.
    pub fn from_meta(sel: &meta::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            requirements.push(LabelRequirement::new(key, LabelOperator::Equals, vec![value.clone()])?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => LabelOperator::In,
                "NotIn" => LabelOperator::NotIn,
                "Exists" => LabelOperator::Exists,
                "DoesNotExist" => LabelOperator::DoesNotExist,
                other => {
                    return Err(SelectorError::InvalidOperator { key: expr.key.clone(), operator: other.to_owned() });
                }
            };
            requirements.push(LabelRequirement::new(&expr.key, operator, expr.values.clone().unwrap_or_default())?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// The selector that matches every object (Kubernetes' `labels.Everything()`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Whether this selector has no requirements, and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether a JSON object's `metadata.labels` satisfy every requirement. An object without
    /// labels has the empty label set; a label whose value is not a string is ignored.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches_with(&get))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// A token of the label selector grammar. `in` and `notin` are lexed as identifiers and
/// recognised as keywords only where an operator is expected, as Kubernetes' parser does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    /// `!`
    Bang,
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `!=`
    NotEquals,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `(`
    Open,
    /// `)`
    Close,
    /// `,`
    Comma,
    End,
}

impl Token {
    fn literal(&self) -> &str {
        match self {
            Token::Identifier(s) => s,
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
            Token::End => "end of string",
        }
    }
}

fn is_selector_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits a label selector into tokens. Every special character is a token on its own, and
/// `!=` and `==` are the only two-character ones, so lexing cannot fail.
fn lex(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if is_selector_whitespace(c) {
            chars.next();
        } else if is_special(c) {
            chars.next();
            let token = match (c, chars.peek()) {
                ('!', Some('=')) => {
                    chars.next();
                    Token::NotEquals
                }
                ('=', Some('=')) => {
                    chars.next();
                    Token::DoubleEquals
                }
                ('!', _) => Token::Bang,
                ('=', _) => Token::Equals,
                ('>', _) => Token::Greater,
                ('<', _) => Token::Less,
                ('(', _) => Token::Open,
                (')', _) => Token::Close,
                _ => Token::Comma,
            };
            tokens.push(token);
        } else {
            let mut ident = String::new();
            while let Some(&c) = chars.peek() {
                if is_selector_whitespace(c) || is_special(c) {
                    break;
                }
                ident.push(c);
                chars.next();
            }
            tokens.push(Token::Identifier(ident));
        }
    }
    tokens.push(Token::End);
    tokens
}

/// Recursive-descent parser over the tokens, a port of `labels.Parser`.
struct Parser<'s> {
    selector: &'s str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.pos += 1;
        token
    }

    fn error(&self, found: &Token, expected: &'static str) -> SelectorError {
        SelectorError::Syntax { selector: self.selector.to_owned(), found: found.literal().to_owned(), expected }
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::Identifier(_) | Token::Bang => {
                    requirements.push(self.requirement()?);
                    match self.next() {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            if !matches!(self.peek(), Token::Identifier(_) | Token::Bang) {
                                return Err(self.error(self.peek(), "identifier after ','"));
                            }
                        }
                        other => return Err(self.error(&other, "',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(requirements),
                other => return Err(self.error(other, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        let negated = *self.peek() == Token::Bang;
        if negated {
            self.pos += 1;
        }
        let key = match self.next() {
            Token::Identifier(key) => key,
            other => return Err(self.error(&other, "identifier")),
        };
        validate_key(&key)?;
        if negated || matches!(self.peek(), Token::End | Token::Comma) {
            let operator = if negated { LabelOperator::DoesNotExist } else { LabelOperator::Exists };
            return LabelRequirement::new(&key, operator, Vec::new());
        }
        let operator = match self.next() {
            Token::Equals | Token::DoubleEquals => LabelOperator::Equals,
            Token::NotEquals => LabelOperator::NotEquals,
            Token::Greater => LabelOperator::GreaterThan,
            Token::Less => LabelOperator::LessThan,
            Token::Identifier(word) if word == "in" => LabelOperator::In,
            Token::Identifier(word) if word == "notin" => LabelOperator::NotIn,
            other => return Err(self.error(&other, "=, !=, ==, in, notin, >, <")),
        };
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        LabelRequirement::new(&key, operator, values)
    }

    /// `(a,b)`; empty elements (`()`, `(a,)`, `(,a)`) are the empty value, as in Kubernetes.
    fn set_values(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Token::Open => {}
            other => return Err(self.error(&other, "'('")),
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::Identifier(value) if expect_value => {
                    values.push(value);
                    expect_value = false;
                }
                Token::Comma => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                Token::Close => {
                    if expect_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                other if expect_value => {
                    return Err(self.error(&other, "',', ')' or identifier"));
                }
                other => return Err(self.error(&other, "',' or ')'")),
            }
        }
    }

    /// The single value after `=`, `!=`, `>` or `<`; nothing before `,` or the end is `""`.
    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.peek() {
            Token::End | Token::Comma => Ok(vec![String::new()]),
            _ => match self.next() {
                Token::Identifier(value) => Ok(vec![value]),
                other => Err(self.error(&other, "identifier")),
            },
        }
    }
}

/// Validates a label key as a Kubernetes qualified name: an optional DNS-1123 subdomain
/// prefix of at most 253 characters and `/`, then a name of at most 63 characters.
fn validate_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason| SelectorError::InvalidKey { key: key.to_owned(), reason };
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err(invalid(
                    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', \
                     with an optional DNS subdomain prefix and '/'",
                ));
            }
            if prefix.is_empty() {
                return Err(invalid("prefix part must be non-empty"));
            }
            if prefix.len() > 253 {
                return Err(invalid("prefix part must be no more than 253 characters"));
            }
            if !matches_dns1123_subdomain(prefix) {
                return Err(invalid(
                    "prefix part must be a lowercase RFC 1123 subdomain: lower case \
                     alphanumeric characters, '-' or '.', starting and ending with an \
                     alphanumeric character",
                ));
            }
            name
        }
    };
    if name.is_empty() {
        return Err(invalid("name part must be non-empty"));
    }
    if name.len() > 63 {
        return Err(invalid("name part must be no more than 63 characters"));
    }
    if !is_qualified_name_part(name) {
        return Err(invalid(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character",
        ));
    }
    Ok(())
}

/// Validates a label value: empty, or at most 63 characters of the qualified-name charset.
fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let invalid = |reason| SelectorError::InvalidValue { key: key.to_owned(), value: value.to_owned(), reason };
    if value.len() > 63 {
        return Err(invalid("must be no more than 63 characters"));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        return Err(invalid(
            "a valid label must be an empty string or consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// The operator of a [`FieldRequirement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One term of a [`FieldSelector`]. `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `spec.nodeName`, exactly as written.
    pub field: String,
    /// Whether the field must equal or differ from `value`.
    pub op: FieldOp,
    /// The value to compare with, with escapes removed.
    pub value: String,
}

impl FieldRequirement {
    fn matches(&self, actual: &str) -> bool {
        match self.op {
            FieldOp::Equals => actual == self.value,
            FieldOp::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{op}", self.field)?;
        for c in self.value.chars() {
            if matches!(c, '\\' | ',' | '=') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A field selector: every term must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// In the order of their raw terms, sorted as strings, as Kubernetes does.
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` syntax: comma-separated `a=b`, `a==b`, `a!=b`. In values,
    /// `\,`, `\=` and `\\` stand for `,`, `=` and `\`; any other backslash, or an unescaped `,`
    /// or `=`, is an error. The field is split at the first operator and taken as written
    /// (no trimming, like Kubernetes). Empty terms are skipped, so `""` matches everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = split_terms(s);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw)) = split_term(term) else {
                return Err(SelectorError::FieldTerm { selector: s.to_owned(), term: term.to_owned() });
            };
            requirements.push(FieldRequirement { field: field.to_owned(), op, value: unescape_value(raw)? });
        }
        Ok(Self { requirements })
    }

    /// The terms, in canonical order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether this selector has no terms, and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every term holds, given the string value of each field (`""` when absent).
    pub fn matches(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.requirements.iter().all(|r| r.matches(&value_of(&r.field)))
    }

    /// Whether every term holds for a JSON object, reading fields with [`field_value`].
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(|field| field_value(obj, field))
    }

    /// The value of the first `field=value` term on `field`, if any: the fast path for
    /// `metadata.name=x` (Kubernetes' `RequiresExactMatch`).
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements.iter().find(|r| r.op == FieldOp::Equals && r.field == field).map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Splits at commas that are not escaped by a backslash; escapes are kept for `unescape_value`.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator; `!=` and `==` win over `=` at the same position.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [("!=", FieldOp::NotEquals), ("==", FieldOp::Equals), ("=", FieldOp::Equals)] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

/// Removes Kubernetes' field selector escapes (`fields.UnescapeValue`).
fn unescape_value(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscape { sequence: format!("\\{c}"), value: raw.to_owned() });
            }
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if matches!(c, ',' | '=') {
            return Err(SelectorError::UnescapedCharacter { character: c, value: raw.to_owned() });
        } else {
            out.push(c);
        }
    }
    if escaped {
        return Err(SelectorError::InvalidEscape { sequence: "\\".to_owned(), value: raw.to_owned() });
    }
    Ok(out)
}

/// Values of selectable fields that Kubernetes computes from a Go zero value, so that an
/// absent field still reads as this and not as `""`: (kind, field, value).
static FIELD_DEFAULTS: &[(&str, &str, &str)] = &[
    ("Pod", "spec.hostNetwork", "false"),
    ("Node", "spec.unschedulable", "false"),
    ("ReplicaSet", "status.replicas", "0"),
    ("ReplicationController", "status.replicas", "0"),
];

/// The string value of a field-selector label on a JSON object, as the Kubernetes apiserver
/// computes it: a dotted path into the object (`spec.nodeName` → `obj["spec"]["nodeName"]`);
/// strings as they are, booleans `true`/`false`, numbers in decimal; missing, `null`, objects
/// and lists read as `""`. Special cases like Kubernetes: for an Event (`kind: Event`, or an
/// object with `involvedObject`), `source` is `source.component`, falling back to
/// `reportingComponent` when that is empty; `spec.hostNetwork` of a Pod and
/// `spec.unschedulable` of a Node read `false` and `status.replicas` of a ReplicaSet or
/// ReplicationController reads `0` when absent.
pub fn field_value(obj: &Value, field: &str) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if field == "source" && (kind == "Event" || obj.get("involvedObject").is_some()) {
        let component = string_at(obj, "source.component");
        return if component.is_empty() { string_at(obj, "reportingComponent") } else { component };
    }
    let found = lookup(obj, field);
    if found.is_none_or(Value::is_null)
        && let Some((_, _, default)) = FIELD_DEFAULTS.iter().find(|(k, f, _)| *k == kind && *f == field)
    {
        return (*default).to_owned();
    }
    found.map(scalar_string).unwrap_or_default()
}

fn lookup<'v>(obj: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(obj, |v, name| v.get(name))
}

fn string_at(obj: &Value, path: &str) -> String {
    lookup(obj, path).map(scalar_string).unwrap_or_default()
}

fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap()
    }

    #[test]
    fn empty_label_selector_matches_everything() {
        let s = sel("");
        assert!(s.is_empty());
        assert_eq!(s, LabelSelector::everything());
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
        assert!(sel("  ").is_empty());
    }

    #[test]
    fn equality_forms_match_only_the_exact_value() {
        for s in ["app=web", "app==web", " app = web "] {
            let s = sel(s);
            assert!(s.matches(&labels(&[("app", "web")])));
            assert!(!s.matches(&labels(&[("app", "db")])));
            assert!(!s.matches(&labels(&[])));
        }
        assert_eq!(sel("app==web"), sel("app=web"));
    }

    #[test]
    fn not_equals_matches_objects_without_the_key() {
        let s = sel("app!=web");
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("app", "db")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn set_based_in_requires_the_key() {
        let s = sel("tier in (a, b)");
        assert!(s.matches(&labels(&[("tier", "b")])));
        assert!(!s.matches(&labels(&[("tier", "c")])));
        assert!(!s.matches(&labels(&[])));
    }

    #[test]
    fn set_based_notin_matches_objects_without_the_key() {
        let s = sel("tier notin (a,b)");
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("tier", "c")])));
        assert!(!s.matches(&labels(&[("tier", "a")])));
    }

    #[test]
    fn exists_and_does_not_exist_look_only_at_the_key() {
        let s = sel("canary");
        assert!(s.matches(&labels(&[("canary", "")])));
        assert!(!s.matches(&labels(&[])));
        let s = sel("!canary");
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("canary", "x")])));
    }

    #[test]
    fn gt_and_lt_compare_integers_and_reject_non_integer_labels() {
        let s = sel("replicas>1,replicas<3");
        assert!(s.matches(&labels(&[("replicas", "2")])));
        assert!(!s.matches(&labels(&[("replicas", "3")])));
        assert!(!s.matches(&labels(&[("replicas", "x")])));
        assert!(!s.matches(&labels(&[])));
        assert!(LabelSelector::parse("replicas>x").is_err());
        assert!(LabelSelector::parse("replicas>").is_err());
    }

    #[test]
    fn all_requirements_must_hold() {
        let s = sel("app=web,!canary,tier in (front)");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "front"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn empty_values_are_allowed() {
        assert!(sel("app=").matches(&labels(&[("app", "")])));
        assert!(sel("app in ()").matches(&labels(&[("app", "")])));
        assert!(sel("app in (a,)").matches(&labels(&[("app", "")])));
    }

    #[test]
    fn syntax_errors_name_the_found_token_and_the_input() {
        let err = LabelSelector::parse("=a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to parse requirement in \"=a\": found '=', expected: !, identifier, or 'end of string'"
        );
        for bad in ["a=b,", "a b", "a in b", "a in (b", "a in (b c)", "a=(b)", "!a=b", "a,,b", "x=a=b"] {
            assert!(
                matches!(LabelSelector::parse(bad), Err(SelectorError::Syntax { .. })),
                "{bad} should be a syntax error"
            );
        }
    }

    #[test]
    fn invalid_keys_and_values_are_rejected() {
        for bad_key in ["-a=b", "a-=b", "a/b/c=d", "/a=b", "Foo.com/a=b", "a_b.example.com/x=y"] {
            assert!(matches!(LabelSelector::parse(bad_key), Err(SelectorError::InvalidKey { .. })), "{bad_key}");
        }
        let long = "a".repeat(64);
        assert!(LabelSelector::parse(&long).is_err());
        assert!(LabelSelector::parse(&format!("a={long}")).is_err());
        assert!(matches!(LabelSelector::parse("a=-b"), Err(SelectorError::InvalidValue { .. })));
        assert!(sel("app.kubernetes.io/name=web_1.x").matches(&labels(&[("app.kubernetes.io/name", "web_1.x")])));
    }

    #[test]
    fn display_is_sorted_by_key_and_parses_back_to_an_equal_selector() {
        let s = sel("tier in (b,a,b), app==web, !canary, x notin (z), n>1, k!=v, e");
        let text = s.to_string();
        assert_eq!(text, "app=web,!canary,e,k!=v,n>1,tier in (a,b),x notin (z)");
        assert_eq!(sel(&text), s);
    }

    #[test]
    fn in_and_notin_are_keywords_only_where_an_operator_is_expected() {
        let s = sel("in in (in,notin)");
        assert!(s.matches(&labels(&[("in", "notin")])));
    }

    #[test]
    fn from_meta_combines_match_labels_and_match_expressions() {
        let meta_selector = meta::LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![
                meta::LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["front".into(), "back".into()]),
                },
                meta::LabelSelectorRequirement { key: "canary".into(), operator: "DoesNotExist".into(), values: None },
            ]),
        };
        let s = LabelSelector::from_meta(&meta_selector).unwrap();
        assert_eq!(s.to_string(), "app=web,!canary,tier in (back,front)");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "back")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn from_meta_of_an_empty_selector_matches_everything() {
        let s = LabelSelector::from_meta(&meta::LabelSelector::default()).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn from_meta_rejects_bad_operators_and_value_counts() {
        let expr = |operator: &str, values: Option<Vec<String>>| meta::LabelSelector {
            match_expressions: Some(vec![meta::LabelSelectorRequirement {
                key: "k".into(),
                operator: operator.into(),
                values,
            }]),
            ..Default::default()
        };
        let err = LabelSelector::from_meta(&expr("Gt", Some(vec!["1".into()]))).unwrap_err();
        assert!(matches!(err, SelectorError::InvalidOperator { .. }));
        assert!(LabelSelector::from_meta(&expr("In", None)).is_err());
        assert!(LabelSelector::from_meta(&expr("NotIn", Some(vec![]))).is_err());
        assert!(LabelSelector::from_meta(&expr("Exists", Some(vec!["x".into()]))).is_err());
        assert!(LabelSelector::from_meta(&expr("Exists", None)).is_ok());
        let bad_label = meta::LabelSelector {
            match_labels: Some([("k".to_owned(), "bad value".to_owned())].into()),
            ..Default::default()
        };
        assert!(LabelSelector::from_meta(&bad_label).is_err());
    }

    #[test]
    fn matches_object_reads_metadata_labels_and_treats_missing_as_empty() {
        let s = sel("app=web");
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert!(sel("!app").matches_object(&json!({})));
    }

    #[test]
    fn field_selector_parses_equals_double_equals_and_not_equals() {
        let s = FieldSelector::parse("spec.nodeName==n1,metadata.name!=x,status.phase=Running").unwrap();
        assert_eq!(s.requirements().len(), 3);
        assert_eq!(s.exact("spec.nodeName"), Some("n1"));
        assert_eq!(s.exact("metadata.name"), None);
        assert_eq!(s.to_string(), "metadata.name!=x,spec.nodeName=n1,status.phase=Running");
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"},
                         "status": {"phase": "Running"}});
        assert!(s.matches_object(&pod));
        assert!(!s.matches_object(&json!({"metadata": {"name": "x"}})));
    }

    #[test]
    fn empty_field_selector_matches_everything() {
        let s = FieldSelector::parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches_object(&json!({})));
    }

    #[test]
    fn field_selector_values_use_kubernetes_escaping() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert_eq!(s.exact("metadata.name"), Some(r"a,b=c\d"));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
        assert!(matches!(FieldSelector::parse(r"a=b\x"), Err(SelectorError::InvalidEscape { .. })));
        assert!(matches!(FieldSelector::parse(r"a=b\"), Err(SelectorError::InvalidEscape { .. })));
        assert!(matches!(FieldSelector::parse("a=b=c"), Err(SelectorError::UnescapedCharacter { .. })));
        let err = FieldSelector::parse("a,b=c").unwrap_err();
        assert_eq!(err.to_string(), "invalid selector: 'a,b=c'; can't understand 'a'");
    }

    #[test]
    fn field_not_equals_matches_missing_fields_and_equals_empty_matches_them_too() {
        let pod = json!({"spec": {}});
        assert!(FieldSelector::parse("spec.nodeName!=n1").unwrap().matches_object(&pod));
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches_object(&pod));
    }

    #[test]
    fn field_value_stringifies_scalars_and_reads_missing_as_empty() {
        let obj = json!({"kind": "Thing", "spec": {"s": "x", "b": true, "n": 3, "o": {}, "z": null}});
        assert_eq!(field_value(&obj, "spec.s"), "x");
        assert_eq!(field_value(&obj, "spec.b"), "true");
        assert_eq!(field_value(&obj, "spec.n"), "3");
        assert_eq!(field_value(&obj, "spec.o"), "");
        assert_eq!(field_value(&obj, "spec.z"), "");
        assert_eq!(field_value(&obj, "spec.missing.deeper"), "");
    }

    #[test]
    fn field_value_of_event_source_falls_back_to_reporting_component() {
        let event = json!({"kind": "Event", "source": {"component": "kubelet"},
                           "reportingComponent": "rc"});
        assert_eq!(field_value(&event, "source"), "kubelet");
        let event = json!({"kind": "Event", "source": {}, "reportingComponent": "rc"});
        assert_eq!(field_value(&event, "source"), "rc");
        assert_eq!(field_value(&event, "reportingComponent"), "rc");
    }

    #[test]
    fn field_value_of_unset_go_booleans_is_false() {
        let node = json!({"kind": "Node", "spec": {}});
        assert_eq!(field_value(&node, "spec.unschedulable"), "false");
        let s = FieldSelector::parse("spec.unschedulable=false").unwrap();
        assert!(s.matches_object(&node));
        let cordoned = json!({"kind": "Node", "spec": {"unschedulable": true}});
        assert!(!s.matches_object(&cordoned));
        assert_eq!(field_value(&json!({"kind": "Pod"}), "spec.hostNetwork"), "false");
    }
}
