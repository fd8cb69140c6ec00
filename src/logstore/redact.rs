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

/// Internationalised too: letters and marks of any script (`josé@exämple.de`, `用户@例子.中国`).
const EMAIL: &str =
    r"[\p{L}\p{M}\p{N}._%+\-]+@[\p{L}\p{M}\p{N}\-]+(?:\.[\p{L}\p{M}\p{N}\-]+)*\.[\p{L}\p{M}]{2,}";
const PHONE_INTL: &str = r"(?-u)\+[1-9]\d{0,2}(?:[ .\-]?\(?\d{1,5}\)?){1,6}";
const PHONE_US: &str = r"(?-u)(?:\(\d{3}\) ?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b";
const PHONE_NATIONAL: &str = r"(?-u)\b0\d{1,4}(?:[ .\-/]\d{2,8}){1,4}\b";
/// Plain 10-digit North American numbers (`4155552671`, optionally `1` first): NANP shape,
/// checked against id-like context by [`check_phone_plain`].
const PHONE_PLAIN: &str = r"(?-u)\b1?[2-9][0-8]\d[2-9]\d{6}\b";
/// Digits with single or double separators: space, dash, dot, (narrow) no-break space.
const CARD: &str = r"\b[0-9](?:[ \-.\x{00A0}\x{202F}]{0,2}[0-9]){12,18}\b";
/// Any case, any spacing; the length per country and mod 97 are checked.
const IBAN: &str = r"(?i)\b[a-z]{2}[0-9]{2}(?:[ \x{00A0}]{0,2}[a-z0-9]){11,30}";
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
    // AWS secret access keys: 40 base64-ish characters near `aws`/`secret` or a key id.
    (r"(?-u)[A-Za-z0-9/+]{40}", Some(check_aws_secret)),
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
            add(PHONE_PLAIN, "[PHONE]", Some(check_phone_plain))?;
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

    pub(crate) fn redact_string_with(&self, text: &mut String, use_hook: bool) {
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
    /// (The fallback of [`Redactor::redact_record`]; see `redact_record.rs` for the walk of
    /// every string that the journal uses.)
    pub(crate) fn redact_known_fields(&self, record: &mut LogRecord, use_hook: bool) {
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
}

/// Replace every accepted find of one detector; `None` when nothing was replaced. After a
/// candidate the check rejects, the search resumes one character after its start, so a
/// greedy candidate cannot hide a real find inside it.
fn apply(detector: &Detector, text: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied_to = 0;
    let mut from = 0;
    while let Some(found) = detector.regex.find_at(text, from) {
        let accepted = match detector.check {
            None => Some((found.start(), found.end())),
            Some(check) => check(text, found.start(), found.end()),
        };
        let Some((start, end)) =
            accepted.filter(|&(start, end)| start >= copied_to && end >= start)
        else {
            from = next_char(text, found.start());
            continue;
        };
        let buffer = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buffer.push_str(text.get(copied_to..start).unwrap_or_default());
        buffer.push_str(&detector.placeholder);
        copied_to = end;
        from = if end > found.start() {
            end
        } else {
            next_char(text, found.start())
        };
    }
    let mut buffer = out?;
    buffer.push_str(text.get(copied_to..).unwrap_or_default());
    Some(buffer)
}

/// The byte offset of the character after the one at `at` (the end when none).
fn next_char(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|rest| rest.chars().next())
        .map_or(text.len() + 1, |c| at + c.len_utf8())
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
    // Dots also separate decimals and versions: with dots, only card-shaped groups count
    // (4-4-4-…, or Amex 4-6-5).
    let card_groups = || {
        let groups: Vec<usize> = found
            .split(|c: char| !c.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .map(str::len)
            .collect();
        let amex = groups == [4, 6, 5];
        let fours = groups.len() >= 3
            && groups
                .split_last()
                .is_some_and(|(_, init)| init.iter().all(|&g| g == 4));
        amex || fours
    };
    (ok && (!found.contains('.') || card_groups())).then_some((start, end))
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

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

fn check_iban(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let found = text.get(start..end)?;
    let country = found.get(..2)?.to_ascii_uppercase();
    let &(_, length) = IBAN_LENGTHS.iter().find(|(code, _)| *code == country)?;
    // The IBAN ends after exactly `length` letters and digits (the greedy candidate may run
    // on into the next words), at the end of a word.
    let mut count = 0;
    let mut iban_end = None;
    for (i, c) in found.char_indices() {
        if c.is_ascii_alphanumeric() {
            count += 1;
            if count == length {
                iban_end = Some(start + i + 1);
                break;
            }
        }
    }
    let iban_end = iban_end?;
    if char_after(text, iban_end).is_some_and(char::is_alphanumeric) {
        return None;
    }
    let iban = text.get(start..iban_end)?;
    // Account numbers are mostly digits: spares prose that happens to follow `de12 `.
    let bban = iban.chars().filter(char::is_ascii_alphanumeric).skip(4);
    let (bban_digits, bban_len) = bban.fold((0, 0), |(d, n), c| {
        (d + usize::from(c.is_ascii_digit()), n + 1)
    });
    let digit_heavy = bban_digits * 2 >= bban_len;
    (digit_heavy && iban_valid(iban)).then_some((start, iban_end))
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

/// Words right before a plain number that make it an id, not a phone number.
const ID_WORDS: &[&str] = &[
    "order",
    "invoice",
    "ticket",
    "ref",
    "reference",
    "id",
    "sku",
    "acct",
    "account",
    "tracking",
    "serial",
    "ts",
    "timestamp",
    "isbn",
    "no",
    "nr",
    "build",
    "version",
    "case",
];

fn check_phone_plain(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let glued = |c: Option<char>| {
        c.is_some_and(|c| c.is_alphanumeric() || matches!(c, '#' | '_' | '/' | '$' | '=' | '.'))
    };
    if glued(char_before(text, start))
        || follows_number(text, start)
        || continues_number(text, end)
        || char_after(text, end).is_some_and(|c| c.is_alphanumeric() || c == '_')
    {
        return None;
    }
    // The last word before it (`order 4155552671`, `id: 4155552671`) names an id.
    let before = text.get(..start).unwrap_or_default();
    let window = before
        .get(before.len().saturating_sub(24)..)
        .unwrap_or(before);
    let last_word = window
        .split(|c: char| !c.is_alphanumeric())
        .rfind(|w| !w.is_empty())
        .map(str::to_ascii_lowercase);
    let id_like = last_word.is_some_and(|w| ID_WORDS.contains(&w.as_str()));
    (!id_like).then_some((start, end))
}

fn check_aws_secret(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let base64ish =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '+'));
    // `KEY=secret` is common; padding after it means a longer base64 value.
    if base64ish(char_before(text, start))
        || base64ish(char_after(text, end))
        || char_after(text, end) == Some('=')
    {
        return None;
    }
    let key = text.get(start..end)?;
    // Real keys mix cases and digits (spares hex digests and words).
    let mixed = key.chars().any(|c| c.is_ascii_uppercase())
        && key.chars().any(|c| c.is_ascii_lowercase())
        && key.chars().any(|c| c.is_ascii_digit());
    // Near `aws`, `secret` or a key id (already masked to `[SECRET]` by then).
    let before = text.get(..start).unwrap_or_default();
    let mut from = before.len().saturating_sub(80);
    while !before.is_char_boundary(from) {
        from += 1;
    }
    let context = before.get(from..).unwrap_or_default().to_ascii_lowercase();
    let near = ["aws", "secret", "akia", "asia"]
        .iter()
        .any(|w| context.contains(w));
    (mixed && near).then_some((start, end))
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
