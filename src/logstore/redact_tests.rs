#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::canonical::{ChatRequest, Message, Role, ToolCall, Usage};
use crate::config::RedactPattern;
use proptest::prelude::*;

static DEFAULT: std::sync::LazyLock<Redactor> =
    std::sync::LazyLock::new(|| Redactor::new(&RedactConfig::default()).unwrap());

fn redactor() -> Redactor {
    Redactor::new(&RedactConfig::default()).unwrap()
}

fn redact(text: &str) -> String {
    DEFAULT.redact(text).into_owned()
}

#[test]
fn clean_text_is_borrowed_unchanged() {
    let text = "Summarise the meeting notes from Tuesday, 3 items, version 2.1.";
    assert!(matches!(DEFAULT.redact(text), Cow::Borrowed(_)));
}

#[test]
fn emails_are_masked() {
    assert_eq!(
        redact("mail jane.doe+x@example.co.uk now"),
        "mail [EMAIL] now"
    );
    assert_eq!(redact("<bob@mail-server.io>"), "<[EMAIL]>");
}

#[test]
fn phone_numbers_in_common_formats_are_masked() {
    for phone in [
        "+1 (555) 123-4567",
        "+44 20 7946 0958",
        "+4915112345678",
        "+49 (0)171 1234567",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "030 1234567",
        "06 12 34 56 78",
        "0171/1234567",
        "0044 20 7946 0958",
        "07911 123456",
        "+33 6 12 34 56 78",
        "415 555 0132",
    ] {
        let out = redact(&format!("call {phone} today"));
        assert_eq!(out, "call [PHONE] today", "{phone}");
    }
}

#[test]
fn dates_times_and_small_numbers_are_not_phones() {
    for text in [
        "on 2024-01-15 at 10:30",
        "on 15.01.2024 at 14:00",
        "on 01/02/2024 12:30 sharp",
        "born 05-06-2023",
        "we sold 42 units for 1999 dollars in 3 days",
        "version 1.2.3 and 10.5",
        "take 200 mg",
        "range 100 200 300 400 500",
        "price $1,299.00 for 1999-2004 models",
        "isbn 978-3-16-148410-0",
        "coords 48.8566, 2.3522",
        "it costs 20.000.000 euros",
        "Meeting 10.05.2024 14:30 room 0.12",
        "id 550e8400-e29b-41d4-a716-446655440000",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn an_order_number_is_not_redacted() {
    for text in [
        "order #100234987 shipped",
        "ORD-2024-000123",
        "ticket 4021-77 closed",
        "invoice 2024-0042",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn luhn_valid_cards_with_separators_are_masked() {
    for card in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555555555554444",
        "3782 822463 10005",
        "6011111111111117",
    ] {
        assert_eq!(redact(&format!("card: {card}.")), "card: [CARD].", "{card}");
    }
}

#[test]
fn a_luhn_invalid_sixteen_digit_number_stays() {
    for text in [
        "ref 4111 1111 1111 1112",
        "ref 1234567812345678",
        "ref 1234 5678 9012 3456",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn epoch_milliseconds_are_not_cards() {
    // A Luhn-valid 13-digit epoch-ms-like number: cards start with 2–6.
    let ts = luhn_card(1, &[7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 13);
    assert!(luhn_valid(&digits(&ts)));
    let text = format!("ts={ts}");
    assert_eq!(redact(&text), text);
}

#[test]
fn ibans_with_valid_check_digits_are_masked() {
    assert_eq!(
        redact("IBAN DE89 3704 0044 0532 0130 00 please"),
        "IBAN [IBAN] please"
    );
    assert_eq!(redact("to GB82WEST12345698765432."), "to [IBAN].");
    assert_eq!(redact("FR14 2004 1010 0505 0001 3M02 606"), "[IBAN]");
}

#[test]
fn an_iban_with_wrong_check_digits_stays() {
    let text = "IBAN DE00 3704 0044 0532 0130 00";
    assert_eq!(redact(text), text);
}

#[test]
fn ssns_are_masked_but_invalid_areas_stay() {
    assert_eq!(redact("ssn 123-45-6789."), "ssn [SSN].");
    for text in [
        "id 000-12-3456",
        "id 666-12-3456",
        "id 912-12-3456",
        "id 123-00-4567",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn ip_addresses_are_masked() {
    assert_eq!(
        redact("from 192.168.1.20 and 8.8.8.8"),
        "from [IP] and [IP]"
    );
    assert_eq!(redact("v6 2001:db8::1 here"), "v6 [IP] here");
    assert_eq!(redact("host fe80::1ff:fe23:4567:890a."), "host [IP].");
    assert_eq!(
        redact("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
        "full [IP]"
    );
}

#[test]
fn code_paths_times_and_versions_are_not_ips() {
    for text in [
        "use std::fmt::Debug;",
        "a :: b",
        "at 12:30:45",
        "mac 00:1a:2b:3c:4d:5e",
        "version 1.2.3.4.5",
        "fn deadbeef::cafe()",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn secret_shaped_tokens_are_masked() {
    for secret in [
        "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        "sk-proj-AbCdEf0123456789_ghIJkl-mnOPqr",
        "sk-ant-api03-AbCdEf0123456789ghIJklmnOPqr-stUV",
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ] {
        let out = redact(&format!("key {secret} end"));
        assert_eq!(out, "key [SECRET] end", "{secret}");
    }
}

#[test]
fn bearer_tokens_keep_the_scheme_word() {
    assert_eq!(
        redact("Authorization: Bearer abc123DEF456ghi789"),
        "Authorization: Bearer [SECRET]"
    );
}

#[test]
fn private_key_blocks_are_masked() {
    let text = "k=-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY----- done";
    assert_eq!(redact(text), "k=[SECRET] done");
}

#[test]
fn prose_after_sk_dash_is_not_a_key() {
    let text = "we use sk-learn-and-friends-for-everything daily";
    assert_eq!(redact(text), text);
}

#[test]
fn detectors_can_be_switched_off() {
    let config = RedactConfig {
        email: false,
        ip: false,
        ..RedactConfig::default()
    };
    let redactor = Redactor::new(&config).unwrap();
    assert_eq!(
        redactor.redact("a@b.com 10.0.0.1 123-45-6789"),
        "a@b.com 10.0.0.1 [SSN]"
    );
}

#[test]
fn operator_patterns_become_named_placeholders() {
    let config = RedactConfig {
        patterns: vec![RedactPattern {
            name: "employee".into(),
            regex: r"EMP-\d{6}".into(),
        }],
        ..RedactConfig::default()
    };
    let redactor = Redactor::new(&config).unwrap();
    assert_eq!(redactor.redact("ask EMP-123456"), "ask [REDACTED:employee]");
}

#[test]
fn a_bad_operator_pattern_is_a_config_error() {
    let config = RedactConfig {
        patterns: vec![RedactPattern {
            name: "broken".into(),
            regex: "(".into(),
        }],
        ..RedactConfig::default()
    };
    let err = Redactor::new(&config).unwrap_err();
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn the_policy_hook_runs_after_the_built_ins() {
    let hook: RedactHook = Arc::new(|text: &str| {
        assert!(!text.contains('@'), "built-ins ran first");
        text.contains("Project Falcon")
            .then(|| text.replace("Project Falcon", "[CODENAME]"))
    });
    let redactor = redactor().with_hook(Some(hook));
    assert_eq!(
        redactor.redact("Project Falcon lead x@y.org"),
        "[CODENAME] lead [EMAIL]"
    );
    assert!(matches!(redactor.redact("nothing here"), Cow::Borrowed(_)));
}

#[test]
fn every_free_text_place_of_a_record_is_redacted() {
    let mut user = Message::text(Role::User, "mail a@b.com");
    user.content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "data:image/png;base64,iVBORw0KGgo=".into(),
        },
        detail: None,
    });
    user.content.push(ContentPart::Image {
        source: ImageSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        },
        detail: None,
    });
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.tool_calls.push(ToolCall {
        id: "c1".into(),
        name: "lookup".into(),
        arguments: r#"{"card":"4111 1111 1111 1111"}"#.into(),
    });
    let mut tool = Message::text(Role::Tool, "owner: c@d.net");
    tool.tool_call_id = Some("c1".into());
    let mut request = ChatRequest {
        model: "m".into(),
        messages: vec![user, assistant, tool],
        end_user: Some("e@f.com".into()),
        ..ChatRequest::default()
    };
    request.metadata.insert("note".into(), "ip 10.1.2.3".into());
    let mut record = super::super::tests::record_with(request);
    record.output_text = "key sk-abcdefghijklmnop0123456789".into();
    record.output_tool_calls.push(ToolCall {
        id: "c2".into(),
        name: "send".into(),
        arguments: r#"{"to":"g@h.com"}"#.into(),
    });
    record.error = Some("bad token Bearer abcdefghijkl123".into());
    record.usage = Usage::default();

    DEFAULT.redact_record(&mut record);
    let json = serde_json::to_string(&record).unwrap();
    for raw in [
        "a@b.com",
        "iVBOR",
        "4111",
        "c@d.net",
        "e@f.com",
        "10.1.2.3",
        "sk-abc",
        "g@h.com",
        "abcdefghijkl123",
    ] {
        assert!(!json.contains(raw), "{raw} survived in {json}");
    }
    for placeholder in ["[EMAIL]", "[IMAGE]", "[CARD]", "[IP]", "[SECRET]"] {
        assert!(
            json.contains(placeholder),
            "{placeholder} missing in {json}"
        );
    }
}

/// A Luhn-valid card number of `len` digits starting with `first`.
fn luhn_card(first: u32, body: &[u32], len: usize) -> String {
    let mut number = vec![first];
    number.extend(body.iter().copied().take(len - 2));
    for check in 0..10 {
        let mut candidate = number.clone();
        candidate.push(check);
        if luhn_valid(&candidate) {
            return candidate
                .iter()
                .map(|d| char::from_digit(*d, 10).unwrap())
                .collect();
        }
    }
    unreachable!("one check digit always fits")
}

fn group(number: &str, separator: &str) -> String {
    let chunks: Vec<String> = number
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    chunks.join(separator)
}

proptest! {
    #[test]
    fn no_generated_email_survives(
        local in "[a-zA-Z0-9._%+-]{1,20}",
        domain in "[a-z0-9]{1,12}(\\.[a-z0-9]{1,8}){0,2}",
        tld in "[a-z]{2,6}",
        before in "[a-zA-Z ,.!?]{0,30}",
        after in "[a-zA-Z ,.!?]{0,30}",
    ) {
        let email = format!("{local}@{domain}.{tld}");
        let text = format!("{before} {email} {after}");
        let out = redact(&text);
        prop_assert!(!out.contains(&email), "{} -> {}", text, out);
        prop_assert!(!out.contains(&format!("@{domain}.{tld}")), "{} -> {}", text, out);
    }

    #[test]
    fn no_generated_card_survives(
        first in 2u32..=6,
        body in proptest::collection::vec(0u32..10, 18),
        len in 13usize..=19,
        separator in prop_oneof![Just(""), Just(" "), Just("-")],
        before in "[a-zA-Z :,]{0,20}",
        after in "[a-zA-Z .,]{0,20}",
    ) {
        let number = luhn_card(first, &body, len);
        let shown = group(&number, separator);
        let text = format!("{before} {shown} {after}");
        let out = redact(&text);
        prop_assert!(!out.contains(&shown), "{} -> {}", text, out);
        prop_assert!(!digits(&out).iter().map(|d| char::from_digit(*d, 10).unwrap()).collect::<String>().contains(&number));
    }

    #[test]
    fn no_generated_sk_key_survives(
        prefix in prop_oneof![Just("sk-"), Just("sk-proj-"), Just("sk-ant-api03-")],
        body in "[A-Za-z0-9_-]{20,60}",
        digit in 0u32..10,
        before in "[a-zA-Z :=\"]{0,20}",
        after in "[a-zA-Z .,\"]{0,20}",
    ) {
        let key = format!("{prefix}{digit}{body}");
        let text = format!("{before} {key} {after}");
        let out = redact(&text);
        prop_assert!(!out.contains(&key), "{} -> {}", text, out);
        prop_assert!(!out.contains(&body), "{} -> {}", text, out);
    }

    #[test]
    fn redaction_never_panics_and_is_idempotent(text in "\\PC{0,200}") {
        let once = redact(&text);
        let twice = redact(&once);
        prop_assert_eq!(once, twice);
    }
}
