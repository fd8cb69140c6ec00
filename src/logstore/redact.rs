//! Redaction: masks personal data and secrets before anything reaches the disk.
//!
//! Built-in detectors, each switchable in `[logs.redact]`, replace what they find with a
//! placeholder: emails `[EMAIL]`, phone numbers `[PHONE]`, Luhn-valid payment cards `[CARD]`,
//! mod-97-valid IBANs `[IBAN]`, US social security numbers `[SSN]`, IPv4/IPv6 addresses
//! `[IP]`, and secret-shaped tokens (`sk-…` keys, AWS access key ids, JWTs, `Bearer` tokens,
//! GitHub/Slack/Google tokens, PEM private keys) `[SECRET]`. Operator patterns become
//! `[REDACTED:<name>]` and run first; the policy's `redact(text)` hook runs last.
//!
//! Regexes are compiled once in [`Redactor::new`]. Candidates a regex finds are checked
//! (Luhn, mod 97, digit counts, neighbouring characters) so that dates, order numbers and
//! plain small numbers survive.

use super::record::LogRecord;
use super::LogError;
use crate::canonical::{ContentPart, ImageSource};
use crate::config::RedactConfig;
use regex::{Regex, RegexSet};
use std::borrow::Cow;
use std::sync::Arc;

/// Extra masking applied after the built-in detectors (the policy's `redact(text)` hook):
/// `Some(new_text)` replaces the text, `None` keeps it.
pub type RedactHook = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Decides whether a regex candidate `text[start..end]` is a real find, and which part of it
/// to replace (a sub-range, as absolute byte offsets).
type Check = fn(text: &str, start: usize, end: usize) -> Option<(usize, usize)>;

struct Detector {
    regex: Regex,
    placeholder: String,
    check: Option<Check>,
}

/// Masks sensitive data in text and in whole log records. Cheap to share (`Arc`) and use
/// from many threads.
pub struct Redactor {
    detectors: Vec<Detector>,
    /// All detector regexes in one automaton: one pass says which detectors can match.
    any: RegexSet,
    hook: Option<RedactHook>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("detectors", &self.detectors.len())
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

const EMAIL: &str = r"(?-u)[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}";
const PHONE_INTL: &str = r"(?-u)\+[1-9]\d{0,2}(?:[ .\-]?\(?\d{1,5}\)?){1,6}";
const PHONE_US: &str = r"(?-u)(?:\(\d{3}\) ?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b";
const PHONE_NATIONAL: &str = r"(?-u)\b0\d{1,4}(?:[ .\-/]\d{2,8}){1,4}\b";
const CARD: &str = r"(?-u)\b\d(?:[ \-]?\d){12,18}\b";
const IBAN: &str = r"(?-u)\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b";
const SSN: &str = r"(?-u)\b\d{3}-\d{2}-\d{4}\b";
const IPV4: &str =
    r"(?-u)\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b";
const IPV6: &str = r"(?i-u)(?:[0-9a-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{1,4})?";
const SECRET_PATTERNS: &[(&str, Option<Check>)] = &[
    (
        r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
        None,
    ),
    (
        r"(?i-u)\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*",
        Some(check_bearer),
    ),
    (
        r"(?-u)\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
        None,
    ),
    (r"(?-u)\bsk-[A-Za-z0-9_\-]{20,}", Some(check_sk_key)),
    (r"(?-u)\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", None),
    (r"(?-u)\bgh[pousr]_[A-Za-z0-9]{30,}\b", None),
    (r"(?-u)\bxox[abprs]-[A-Za-z0-9\-]{10,}", None),
    (r"(?-u)\bAIza[0-9A-Za-z_\-]{35}", None),
];

impl Redactor {
    /// Compile the enabled detectors and the operator's patterns. Fails only on a bad
    /// operator regex (config validation reports those first).
    pub fn new(config: &RedactConfig) -> Result<Redactor, LogError> {
        let mut detectors = Vec::new();
        let mut add =
            |pattern: &str, placeholder: &str, check: Option<Check>| -> Result<(), LogError> {
                let regex = Regex::new(pattern).map_err(|err| {
                    LogError::Config(format!("redaction pattern `{placeholder}`: {err}"))
                })?;
                detectors.push(Detector {
                    regex,
                    placeholder: placeholder.to_string(),
                    check,
                });
                Ok(())
            };
        for pattern in &config.patterns {
            add(
                &pattern.regex,
                &format!("[REDACTED:{}]", pattern.name),
                None,
            )?;
        }
        // Order matters: secrets hold digit runs, emails hold dots, IBANs hold card-like
        // digits, and phone formats are the loosest, so they go last.
        if config.secrets {
            for (pattern, check) in SECRET_PATTERNS {
                add(pattern, "[SECRET]", *check)?;
            }
        }
        if config.email {
            add(EMAIL, "[EMAIL]", None)?;
        }
        if config.iban {
            add(IBAN, "[IBAN]", Some(check_iban))?;
        }
        if config.card {
            add(CARD, "[CARD]", Some(check_card))?;
        }
        if config.ssn {
            add(SSN, "[SSN]", Some(check_ssn))?;
        }
        if config.ip {
            add(IPV6, "[IP]", Some(check_ipv6))?;
            add(IPV4, "[IP]", Some(check_ipv4))?;
        }
        if config.phone {
            add(PHONE_INTL, "[PHONE]", Some(check_phone_intl))?;
            add(PHONE_US, "[PHONE]", Some(check_phone_us))?;
            add(PHONE_NATIONAL, "[PHONE]", Some(check_phone_national))?;
        }
        let any = RegexSet::new(detectors.iter().map(|d| d.regex.as_str()))
            .map_err(|err| LogError::Config(format!("redaction patterns: {err}")))?;
        Ok(Redactor {
            detectors,
            any,
            hook: None,
        })
    }

    /// Add the policy's extra masking, applied after the built-in detectors.
    pub fn with_hook(mut self, hook: Option<RedactHook>) -> Redactor {
        self.hook = hook;
        self
    }

    /// The text with every find replaced by its placeholder; borrowed when nothing matched.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.redact_with(text, true)
    }

    /// [`Redactor::redact`], with or without the policy's hook (skipped only to finish a
    /// shutdown in time: the built-in detectors and operator patterns always run).
    pub fn redact_with<'a>(&self, text: &'a str, use_hook: bool) -> Cow<'a, str> {
        let mut current = Cow::Borrowed(text);
        // Placeholders are bracketed words, so a replacement never creates a new find:
        // one pass over the input says which detectors can match at all.
        let candidates = self.any.matches(text);
        for (i, detector) in self.detectors.iter().enumerate() {
            if !candidates.matched(i) {
                continue;
            }
            if let Some(replaced) = apply(detector, &current) {
                current = Cow::Owned(replaced);
            }
        }
        if let Some(hook) = self.hook.as_ref().filter(|_| use_hook) {
            if let Some(replaced) = hook(&current) {
                current = Cow::Owned(replaced);
            }
        }
        current
    }

    /// Redact one string in place.
    pub fn redact_string(&self, text: &mut String) {
        self.redact_string_with(text, true);
    }

    fn redact_string_with(&self, text: &mut String, use_hook: bool) {
        let replaced = match self.redact_with(text, use_hook) {
            Cow::Borrowed(_) => None,
            Cow::Owned(new) => Some(new),
        };
        if let Some(new) = replaced {
            *text = new;
        }
    }

    /// Redact every free-text place of a record: message text parts (tool results
    /// included), tool call arguments, metadata values, the end user, output text, output
    /// tool call arguments and errors. Inline images (`data:` URLs, base64) become `[IMAGE]`.
    pub fn redact_record(&self, record: &mut LogRecord) {
        self.redact_record_with(record, true);
    }

    fn redact_record_with(&self, record: &mut LogRecord, use_hook: bool) {
        for message in &mut record.request.messages {
            for part in &mut message.content {
                match part {
                    ContentPart::Text { text } => self.redact_string_with(text, use_hook),
                    ContentPart::Image { source, .. } => match source {
                        ImageSource::Url { url } => {
                            let is_data = url
                                .get(..5)
                                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"));
                            if is_data {
                                *url = "[IMAGE]".to_string();
                            } else {
                                self.redact_string_with(url, use_hook);
                            }
                        }
                        ImageSource::Base64 { data, .. } => *data = "[IMAGE]".to_string(),
                    },
                }
            }
            for call in &mut message.tool_calls {
                self.redact_string_with(&mut call.arguments, use_hook);
            }
        }
        for value in record.request.metadata.values_mut() {
            self.redact_string_with(value, use_hook);
        }
        if let Some(end_user) = &mut record.request.end_user {
            self.redact_string_with(end_user, use_hook);
        }
        self.redact_string_with(&mut record.output_text, use_hook);
        for call in &mut record.output_tool_calls {
            self.redact_string_with(&mut call.arguments, use_hook);
        }
        if let Some(error) = &mut record.error {
            self.redact_string_with(error, use_hook);
        }
        for attempt in &mut record.attempts {
            if let Some(error) = &mut attempt.error {
                self.redact_string_with(error, use_hook);
            }
        }
    }

    /// The record redacted and serialised as the journal stores it.
    pub fn record_json(&self, mut record: LogRecord, use_hook: bool) -> Result<Vec<u8>, LogError> {
        self.redact_record_with(&mut record, use_hook);
        Ok(serde_json::to_vec(&record)?)
    }
}

/// Replace every accepted find of one detector; `None` when nothing was replaced.
fn apply(detector: &Detector, text: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied_to = 0;
    for found in detector.regex.find_iter(text) {
        let (start, end) = match detector.check {
            None => (found.start(), found.end()),
            Some(check) => match check(text, found.start(), found.end()) {
                Some(range) => range,
                None => continue,
            },
        };
        if start < copied_to || end < start {
            continue;
        }
        let buffer = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buffer.push_str(text.get(copied_to..start).unwrap_or_default());
        buffer.push_str(&detector.placeholder);
        copied_to = end;
    }
    let mut buffer = out?;
    buffer.push_str(text.get(copied_to..).unwrap_or_default());
    Some(buffer)
}

fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|before| before.chars().next_back())
}

fn char_after(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|after| after.chars().next())
}

/// The two characters after `at` are a separator and a digit (the find continues a longer
/// number like `1.2.3.4.5` or `123-45-6789-0`).
fn continues_number(text: &str, at: usize) -> bool {
    let mut after = text.get(at..).unwrap_or_default().chars();
    matches!(
        (after.next(), after.next()),
        (Some('.' | '-' | '/' | ':'), Some(d)) if d.is_ascii_digit()
    )
}

/// The character before `start` is a digit or a separator glued to one (`7-`, `3.`).
fn follows_number(text: &str, start: usize) -> bool {
    let mut before = text.get(..start).unwrap_or_default().chars().rev();
    match (before.next(), before.next()) {
        (Some(c), _) if c.is_ascii_digit() => true,
        (Some('.' | '-' | '/' | ':'), Some(d)) => d.is_ascii_digit(),
        _ => false,
    }
}

fn digits(text: &str) -> Vec<u32> {
    text.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// The Luhn checksum is valid.
pub fn luhn_valid(number: &[u32]) -> bool {
    let sum: u32 = number
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

fn check_card(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let found = text.get(start..end)?;
    if char_before(text, start) == Some('+') {
        return None; // an international phone number
    }
    let number = digits(found);
    // Payment networks use major industry identifiers 2–6 (Mastercard 2-series, Amex,
    // Diners, JCB, Visa, Mastercard, Discover); this spares epoch milliseconds and the like.
    let first = *number.first()?;
    let ok = (13..=19).contains(&number.len()) && (2..=6).contains(&first) && luhn_valid(&number);
    ok.then_some((start, end))
}

/// The IBAN's check digits are valid (ISO 13616 mod 97).
pub fn iban_valid(iban: &str) -> bool {
    let compact: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder: u32 = 0;
    for c in tail.iter().chain(head) {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

fn check_iban(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    // Try the whole candidate, then shorter ones ending at a group boundary.
    let found = text.get(start..end)?;
    let mut ends: Vec<usize> = found.match_indices(' ').map(|(i, _)| i).collect();
    ends.push(found.len());
    ends.into_iter()
        .rev()
        .find(|&len| found.get(..len).is_some_and(iban_valid))
        .map(|len| (start, start + len))
}

fn check_ssn(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let found = text.get(start..end)?;
    let mut parts = found.split('-');
    let (area, group, serial) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = area != "000"
        && area != "666"
        && !area.starts_with('9')
        && group != "00"
        && serial != "0000"
        && !follows_number(text, start)
        && !continues_number(text, end);
    valid.then_some((start, end))
}

fn check_ipv4(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let standalone = !matches!(char_before(text, start), Some('.'))
        && !follows_number(text, start)
        && !continues_number(text, end);
    standalone.then_some((start, end))
}

fn check_ipv6(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let found = text.get(start..end)?;
    let glued = |c: Option<char>| {
        c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == ':')
    };
    if glued(char_before(text, start)) || continues_number(text, end) {
        return None;
    }
    if char_after(text, end).is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
        return None;
    }
    if !found.chars().any(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    found
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|_| (start, end))
}

fn check_sk_key(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let token = text.get(start + 3..end)?;
    // `sk-learn-is-a-great-library` is prose, not a key.
    let prose = token.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    (!prose).then_some((start, end))
}

fn check_bearer(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    // Keep the word `Bearer`; replace the token after the whitespace.
    let found = text.get(start..end)?;
    let token_at = found.find(|c: char| c.is_whitespace())?;
    let token_start = found
        .get(token_at..)?
        .find(|c: char| !c.is_whitespace())
        .map(|i| start + token_at + i)?;
    Some((token_start, end))
}

fn check_phone_intl(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let found = text.get(start..end)?;
    let glued = char_before(text, start).is_some_and(|c| c.is_alphanumeric());
    let count = digits(found).len();
    let valid = !glued && (8..=15).contains(&count) && !continues_number(text, end);
    valid.then_some((start, end))
}

fn check_phone_us(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let valid = !follows_number(text, start) && !continues_number(text, end);
    valid.then_some((start, end))
}

/// Looks like a date: `01.02.2024`, `1/2/24`, `05-06-2023`.
fn starts_like_date(found: &str) -> bool {
    let mut parts = found.split(['.', '/', '-']);
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let len = |p: Option<&str>| p.map(|p| p.chars().take_while(char::is_ascii_digit).count());
    matches!(
        (len(a), len(b), len(c)),
        (Some(1..=2), Some(1..=2), Some(2..=4))
    ) && b.is_some_and(|b| b.chars().all(|c| c.is_ascii_digit()))
}

fn check_phone_national(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let found = text.get(start..end)?;
    let count = digits(found).len();
    let ssn_shaped = found.len() == 11 && found.split('-').map(str::len).eq([3, 2, 4]);
    // `00` starts an international number (`0044 20 7946 0958`): up to 15 digits after it.
    let max_digits = if found.starts_with("00") { 17 } else { 13 };
    // Not the tail of a longer run of digit groups (`DE00 3704 0044 0532`).
    let mut before = text.get(..start).unwrap_or_default().chars().rev();
    let after_group =
        matches!((before.next(), before.next()), (Some(' '), Some(d)) if d.is_ascii_digit());
    let valid = (9..=max_digits).contains(&count)
        && !after_group
        && !ssn_shaped
        && !starts_like_date(found)
        && !follows_number(text, start)
        && !continues_number(text, end)
        && char_after(text, end) != Some(':');
    valid.then_some((start, end))
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
