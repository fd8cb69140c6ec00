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

mod checks;
use checks::*;
pub use checks::{iban_valid, luhn_valid};

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
