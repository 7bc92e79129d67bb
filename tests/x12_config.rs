//! `[account.x12]` and the X12 folders: defaults, every key, and each refusal located at its
//! line and column.

use std::path::Path;
use std::time::Duration;
use stitch_bridge::config::{Config, ConfigProblem, OrdersAs, Usage};
use stitch_bridge::x12::{Party, Version};

const ACCOUNT: &str = r#"
[[account]]
name = "acme"
drop = "drops/acme"
stitch_url = "http://127.0.0.1:8080"
token_env = "ACME_STITCH_TOKEN"
"#;

/// The account's text with an `[account.x12]` table holding `body`; the table header is line 7,
/// so `body`'s first line is line 8.
fn with_x12(body: &str) -> String {
    format!("{ACCOUNT}[account.x12]\n{body}")
}

fn parse(text: &str) -> Result<Config, ConfigProblem> {
    Config::parse(text, Path::new("/etc/sb"))
}

const IDS: &str = "interchange_id = \"BRIDGE\"\npartner_interchange_id = \"ACMEWH\"\n";

#[test]
fn without_the_table_there_is_no_partner_and_no_x12_folders() {
    let c = parse(ACCOUNT).unwrap();
    let a = &c.accounts[0];
    assert!(a.x12.is_none());
    assert_eq!((a.folders.inbound_edi.as_str(), a.folders.outbound_acks.as_str()), ("inbound/edi", "outbound/acks"));
    let folders = a.drop_folders();
    assert!(!folders.contains(&"inbound/edi") && !folders.contains(&"outbound/acks"), "{folders:?}");
    assert!(folders.contains(&"inbound/orders") && folders.contains(&"rejected"), "{folders:?}");
}

#[test]
fn defaults_fill_everything_but_the_two_ids() {
    let c = parse(&with_x12(IDS)).unwrap();
    let a = &c.accounts[0];
    let x = a.x12.as_ref().expect("x12");
    assert_eq!(x.us(), Party { qualifier: "ZZ".into(), id: "BRIDGE".into(), application_id: "BRIDGE".into() });
    assert_eq!(x.partner(), Party { qualifier: "ZZ".into(), id: "ACMEWH".into(), application_id: "ACMEWH".into() });
    assert_eq!((x.version, x.usage, x.orders_as), (Version::V004010, Usage::Production, OrdersAs::Csv));
    assert_eq!(x.ack_timeout, Duration::from_secs(24 * 3600));
    assert_eq!(x.partner_key(), "ZZ:ACMEWH");
    let folders = a.drop_folders();
    assert!(folders.contains(&"inbound/edi") && folders.contains(&"outbound/acks"), "{folders:?}");
}

#[test]
fn every_key_is_read() {
    let body = r#"interchange_id = "BRIDGE01"
interchange_qualifier = "01"
partner_interchange_id = "123456789"
partner_interchange_qualifier = "12"
application_id = "BRIDGEAPP"
partner_application_id = "WHAPP"
version = "005010"
usage = "T"
orders_as = "x12"
ack_hours = 6
"#;
    let text = format!("{}[account.folders]\ninbound_edi = \"in/x12\"\noutbound_acks = \"out/997\"\n", with_x12(body));
    let c = parse(&text).unwrap();
    let a = &c.accounts[0];
    let x = a.x12.as_ref().unwrap();
    assert_eq!(x.us(), Party { qualifier: "01".into(), id: "BRIDGE01".into(), application_id: "BRIDGEAPP".into() });
    assert_eq!(x.partner(), Party { qualifier: "12".into(), id: "123456789".into(), application_id: "WHAPP".into() });
    assert_eq!((x.version, x.usage, x.orders_as), (Version::V005010, Usage::Test, OrdersAs::X12));
    assert_eq!(x.usage.isa15(), "T");
    assert_eq!(x.ack_timeout, Duration::from_secs(6 * 3600));
    assert_eq!(x.partner_key(), "12:123456789");
    let folders = a.drop_folders();
    assert!(folders.contains(&"in/x12") && folders.contains(&"out/997"), "{folders:?}");
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let err = parse(&with_x12(&format!("{IDS}ack_hour = 3\n"))).unwrap_err();
    assert!(err.to_string().contains("ack_hour"), "{err}");
    assert_eq!(err.line, Some(10), "{err}");
}

#[test]
fn a_missing_id_is_named() {
    let err = parse(&with_x12("interchange_id = \"BRIDGE\"\n")).unwrap_err();
    assert!(err.to_string().contains("partner_interchange_id"), "{err}");
    assert!(err.line.is_some(), "{err}");
}

#[test]
fn bad_values_are_refused_at_their_line_and_column() {
    // (the line after the ids, what the message must say); the value's column is after "= ".
    for (line, what) in [
        ("version = \"006010\"", "expected `004010` or `005010`"),
        ("usage = \"X\"", "expected `P` or `T`"),
        ("orders_as = \"json\"", "expected `csv` or `x12`"),
        ("ack_hours = 0", "ack_hours must be 1..="),
        ("ack_hours = 100000", "ack_hours must be 1..="),
        ("ack_hours = -1", "expected u64"),
        ("interchange_qualifier = \"Z\"", "interchange_qualifier"),
        ("partner_interchange_qualifier = \"ZZZ\"", "partner_interchange_qualifier"),
        ("interchange_qualifier = \"zz\"", "interchange_qualifier"),
        ("application_id = \"A\"", "application_id"),
        ("partner_application_id = \"THIS-IS-TOO-LONG\"", "partner_application_id"),
    ] {
        let err = parse(&with_x12(&format!("{IDS}{line}\n"))).unwrap_err();
        let column = line.find('=').unwrap() + 3;
        assert_eq!((err.line, err.column), (Some(10), Some(column)), "{line}: {err}");
        assert!(err.message.contains(what), "{line}: {err}");
        assert!(err.to_string().contains(&format!("10 | {line}")), "the line is shown: {err}");
    }
}

#[test]
fn ids_that_do_not_fit_the_isa_are_refused_at_their_value() {
    for bad in ["", "SIXTEEN-CHARS-XX", "TWO WORDS", "A*B", "A~B", "A>B", "A^B", "ÄBC"] {
        for key in ["interchange_id", "partner_interchange_id"] {
            let other = if key == "interchange_id" { "partner_interchange_id" } else { "interchange_id" };
            let text = with_x12(&format!("{other} = \"OK\"\n{key} = \"{bad}\"\n"));
            let err = parse(&text).unwrap_err();
            assert_eq!((err.line, err.column), (Some(9), Some(key.len() + 4)), "{key} = {bad:?}: {err}");
            assert!(err.message.contains(key), "{key} = {bad:?}: {err}");
        }
    }
    // A one-character interchange id is a valid ISA06 but too short for GS02: the message says
    // to set application_id, at the id it defaulted from.
    let err = parse(&with_x12("interchange_id = \"B\"\npartner_interchange_id = \"ACMEWH\"\n")).unwrap_err();
    assert_eq!(err.line, Some(8), "{err}");
    assert!(err.message.contains("application_id") && err.message.contains("interchange_id"), "{err}");
    let ok = parse(&with_x12("interchange_id = \"B\"\napplication_id = \"BB\"\npartner_interchange_id = \"W\"\npartner_application_id = \"WW\"\n"));
    assert_eq!(ok.unwrap().accounts[0].x12.as_ref().unwrap().us().id, "B");
}

#[test]
fn x12_folders_are_checked_like_the_others() {
    let err = parse(&format!("{ACCOUNT}[account.folders]\ninbound_edi = \"../edi\"\n")).unwrap_err();
    assert_eq!(err.line, Some(8), "{err}");
    assert!(err.message.contains("folders.inbound_edi"), "{err}");
    let err = parse(&format!("{ACCOUNT}[account.folders]\noutbound_acks = \"/abs\"\n")).unwrap_err();
    assert!(err.message.contains("folders.outbound_acks"), "{err}");
}
