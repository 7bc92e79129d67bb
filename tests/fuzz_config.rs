//! The config loader on hostile input: `Config::parse` never panics, on arbitrary text or on
//! structurally plausible TOML with random keys and values; whatever it accepts is sane.

use proptest::prelude::*;
use std::path::Path;
use stitch_bridge::config::Config;

const KEYS: &[&str] = &[
    "name",
    "drop",
    "stitch_url",
    "token_env",
    "token_file",
    "settle_seconds",
    "sftp_key_file",
    "sftp_password_env",
    "sftp_key_passphrase_env",
    "known_hosts",
    "sftp_allow_legacy_ssh_rsa",
    "sftp_max_sessions",
    "marker_suffixes",
    "poll_seconds",
    "download_interval_seconds",
    "concurrency",
    "requests_per_second",
    "timeout_seconds",
    "max_retries",
    "inventory_mode",
    "zero_missing",
    "zero_missing_max_share",
    "delimiter",
    "date_format",
    "timezone",
    "max_file_bytes",
    "max_rows",
    "max_field_len",
    "max_rows_per_order",
    "unknown_key",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "64",
            "65",
            "18446744073709551615",
            "9223372036854775807",
            "-9223372036854775808",
            "4294967296",
            "1e400",
            "nan",
            "inf",
            "-inf",
            "0.5",
            "2.0",
            "-0.0",
            "true",
            "false",
            "[]",
            "[\".done\", \"\"]",
            "{}",
            "\"\"",
            "\"acme\"",
            "\"a b\"",
            "\"../x\"",
            "\"/abs\"",
            "\"sftp://u@h:0/p\"",
            "\"sftp://u:pw@h/p\"",
            "\"sftp://h\"",
            "\"file://rel\"",
            "\"file:///abs\"",
            "\"http://127.0.0.1:1\"",
            "\"ftp://x\"",
            "\"http://[::1\"",
            "\"\\t\"",
            "\"tab\"",
            "\"\\\"\"",
            "\"ab\"",
            "\"é\"",
            "\"%\"",
            "\"%Y%\"",
            "\"%-Q\"",
            "\"%s%z%Z\"",
            "\"Mars/Base\"",
            "\"America/St_Johns\"",
            "\"delta\"",
            "\"snapshot\"",
            "\"DELTA\"",
            "1979-05-27T07:32:00Z",
            "'''\nmulti'''",
        ])
        .prop_map(String::from),
        "\"[^\"\\\\\\x00-\\x1f]{0,20}\"".prop_map(|s| s),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ]
}

fn structured() -> impl Strategy<Value = String> {
    let account = prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..5);
    let folders = prop::collection::vec(
        (prop::sample::select(vec!["results", "errors", "archive", "inbound_orders", "bogus"]), value()),
        0..3,
    );
    // Targets: mostly our columns (or aliases), which load; sometimes any name, which must not.
    let target = prop_oneof![
        8 => prop::sample::select(vec!["sku", "quantity", "qty", "order_ref", "tracking_no", " Ship_City "]).prop_map(String::from),
        1 => "[a-z_]{0,10}",
    ];
    let columns = prop::collection::vec(("[a-zA-Z #\"]{0,8}", target), 0..3);
    (
        prop::option::of(value()),
        prop::collection::vec((account, folders, columns, any::<bool>()), 1..3),
    )
        .prop_map(|(ledger, accounts)| {
            let mut t = String::new();
            if let Some(l) = ledger {
                t.push_str(&format!("[ledger]\npath = {l}\n"));
            }
            for (i, (kv, folders, columns, base)) in accounts.into_iter().enumerate() {
                t.push_str("[[account]]\n");
                if base {
                    t.push_str(&format!(
                        "name = \"a{i}\"\ndrop = \"d{i}\"\nstitch_url = \"http://127.0.0.1:8080\"\ntoken_env = \"T{i}\"\n"
                    ));
                }
                for (k, v) in kv {
                    t.push_str(&format!("{k} = {v}\n"));
                }
                if !folders.is_empty() {
                    t.push_str("[account.folders]\n");
                    for (k, v) in folders {
                        t.push_str(&format!("{k} = {v}\n"));
                    }
                }
                if !columns.is_empty() {
                    t.push_str("[account.columns]\n");
                    for (k, v) in columns {
                        t.push_str(&format!("\"{}\" = \"{v}\"\n", k.replace('"', "")));
                    }
                }
            }
            t
        })
}

fn check(text: &str) {
    if let Ok(c) = Config::parse(text, Path::new("/base")) {
        for a in &c.accounts {
            assert!(!a.name.is_empty());
            assert!((1..=64).contains(&a.concurrency));
            assert!(!a.timeout.is_zero());
            assert!((0.0..=1.0).contains(&a.zero_missing_max_share));
            assert!(a.stitch_url.starts_with("http://") || a.stitch_url.starts_with("https://"));
        }
    }
}

fn cases() -> u32 {
    std::env::var("STITCH_BRIDGE_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        check(&text);
    }

    #[test]
    fn arbitrary_bytes_as_lossy_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn structured_random_toml_never_panics(text in structured()) {
        check(&text);
    }
}

#[test]
fn the_structured_generator_reaches_valid_and_invalid_configs() {
    // Guard against a generator that only ever produces parse errors (or only successes).
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        let text = structured().new_tree(&mut runner).unwrap().current();
        match Config::parse(&text, Path::new("/base")) {
            Ok(c) if !c.accounts.is_empty() => ok += 1,
            Ok(_) => {}
            Err(_) => err += 1,
        }
    }
    assert!(ok > 20 && err > 20, "ok {ok}, err {err}");
    println!("fuzz-summary: target=config cases_per_property={} properties=3 generator_valid_share={ok}/2000", cases());
}
