//! The checks that confirm a detector's candidate (Luhn, IBAN mod 97, context words) and
//! trim it to the part to mask.

/// The byte offset of the character after the one at `at` (the end when none).
pub(super) fn next_char(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|rest| rest.chars().next())
        .map_or(text.len() + 1, |c| at + c.len_utf8())
}

pub(super) fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|before| before.chars().next_back())
}

pub(super) fn char_after(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|after| after.chars().next())
}

/// The two characters after `at` are a separator and a digit (the find continues a longer
/// number like `1.2.3.4.5` or `123-45-6789-0`).
pub(super) fn continues_number(text: &str, at: usize) -> bool {
    let mut after = text.get(at..).unwrap_or_default().chars();
    matches!(
        (after.next(), after.next()),
        (Some('.' | '-' | '/' | ':'), Some(d)) if d.is_ascii_digit()
    )
}

/// The character before `start` is a digit or a separator glued to one (`7-`, `3.`).
pub(super) fn follows_number(text: &str, start: usize) -> bool {
    let mut before = text.get(..start).unwrap_or_default().chars().rev();
    match (before.next(), before.next()) {
        (Some(c), _) if c.is_ascii_digit() => true,
        (Some('.' | '-' | '/' | ':'), Some(d)) => d.is_ascii_digit(),
        _ => false,
    }
}

pub(super) fn digits(text: &str) -> Vec<u32> {
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

pub(super) fn check_card(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
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
pub(super) const IBAN_LENGTHS: &[(&str, usize)] = &[
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

pub(super) fn check_iban(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
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

pub(super) fn check_ssn(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
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

pub(super) fn check_ipv4(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let standalone = !matches!(char_before(text, start), Some('.'))
        && !follows_number(text, start)
        && !continues_number(text, end);
    standalone.then_some((start, end))
}

pub(super) fn check_ipv6(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
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

pub(super) fn check_sk_key(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let token = text.get(start + 3..end)?;
    // `sk-learn-is-a-great-library` is prose, not a key.
    let prose = token.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    (!prose).then_some((start, end))
}

pub(super) fn check_bearer(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    // Keep the word `Bearer`; replace the token after the whitespace.
    let found = text.get(start..end)?;
    let token_at = found.find(|c: char| c.is_whitespace())?;
    let token_start = found
        .get(token_at..)?
        .find(|c: char| !c.is_whitespace())
        .map(|i| start + token_at + i)?;
    Some((token_start, end))
}

pub(super) fn check_phone_intl(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let found = text.get(start..end)?;
    let glued = char_before(text, start).is_some_and(|c| c.is_alphanumeric());
    let count = digits(found).len();
    let valid = !glued && (8..=15).contains(&count) && !continues_number(text, end);
    valid.then_some((start, end))
}

/// Words right before a plain number that make it an id, not a phone number.
pub(super) const ID_WORDS: &[&str] = &[
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

pub(super) fn check_phone_plain(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
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

pub(super) fn check_aws_secret(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
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

pub(super) fn check_phone_us(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let valid = !follows_number(text, start) && !continues_number(text, end);
    valid.then_some((start, end))
}

/// Looks like a date: `01.02.2024`, `1/2/24`, `05-06-2023`.
pub(super) fn starts_like_date(found: &str) -> bool {
    let mut parts = found.split(['.', '/', '-']);
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let len = |p: Option<&str>| p.map(|p| p.chars().take_while(char::is_ascii_digit).count());
    matches!(
        (len(a), len(b), len(c)),
        (Some(1..=2), Some(1..=2), Some(2..=4))
    ) && b.is_some_and(|b| b.chars().all(|c| c.is_ascii_digit()))
}

pub(super) fn check_phone_national(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
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
