//! Property test: no input, however malformed, makes a parser panic, and every reported error
//! carries a usable line number.

use proptest::prelude::*;
use stitch_bridge::formats::{self, Kind, ParseOptions, Record};

/// Parses to the end, checking invariants on everything reported.
fn exercise(kind: Kind, input: &[u8], opts: &ParseOptions) {
    let mut units = match formats::parse(kind, input, opts) {
        Ok(u) => u,
        Err(rej) => {
            assert!(rej.line.is_none_or(|l| l >= 1), "{rej:?}");
            return;
        }
    };
    assert!(units.warnings().iter().all(|w| w.line >= 1));
    let _ = units.header();
    for item in &mut units {
        match item {
            Ok(unit) => {
                assert!(!unit.rows.is_empty());
                assert!(unit.rows.iter().all(|r| r.line >= 2), "data rows start after the header");
                match &unit.result {
                    Ok(rec) => {
                        let line = match rec {
                            Record::Inventory(r) => r.line,
                            Record::Order(r) => r.line,
                            Record::Shipment(r) => r.line,
                        };
                        assert_eq!(line, unit.rows[0].line);
                    }
                    Err(errors) => {
                        assert!(!errors.is_empty(), "a rejected unit says why");
                        assert!(errors.iter().all(|e| e.line >= 1 && !e.message.is_empty()));
                    }
                }
            }
            Err(rej) => assert!(rej.line.is_none_or(|l| l >= 1), "{rej:?}"),
        }
    }
    assert!(units.next().is_none(), "iteration stays finished");
    same_when_piped(kind, input, opts);
}

/// The header, then every item in order (units and a mid-stream rejection alike).
type Everything = (Vec<String>, Vec<Result<formats::Unit, formats::FileRejection>>);

/// Everything a parse yields.
fn everything<R: std::io::Read>(
    units: Result<formats::Units<R>, formats::FileRejection>,
) -> Result<Everything, formats::FileRejection> {
    let mut units = units?;
    let header = units.header().to_vec();
    Ok((header, units.by_ref().collect()))
}

/// Framing on its own thread (what `validate` does) gives exactly what framing in line gives.
fn same_when_piped(kind: Kind, input: &[u8], opts: &ParseOptions) {
    let here = everything(formats::parse(kind, input, opts));
    let piped = everything(formats::parse_piped(kind, std::io::Cursor::new(input.to_vec()), opts));
    assert_eq!(here, piped, "piped parsing differs");
}

fn odd_options() -> impl Strategy<Value = ParseOptions> {
    (
        prop::sample::select(vec![b',', b';', b'\t', b'|', b'"', b'\n', b'\r', 0xff]),
        prop::option::of(prop::sample::select(vec!["%d.%m.%Y", "%", "%Y%%", "%s", "%Y-%m-%d %H:%M:%S%z", ""])),
        prop::sample::select(vec!["UTC", "Pacific/Chatham", "America/St_Johns", "Asia/Kathmandu"]),
        any::<bool>(),
        prop::sample::select(vec![0u64, 1, 40, 10_000, u64::MAX]),
        prop::sample::select(vec![0usize, 1, 8, 4096]),
        prop::sample::select(vec![0u64, 1, 3, u64::MAX]),
        prop::sample::select(vec![0usize, 1, 2, 1000]),
        any::<bool>(),
    )
        .prop_map(|(delimiter, fmt, tz, delta, max_file_bytes, max_field_len, max_rows, per_group, alias)| {
            let mut opts = ParseOptions {
                delimiter,
                date_format: fmt.map(String::from),
                timezone: tz.parse().unwrap(),
                inventory_delta: delta,
                max_file_bytes,
                max_field_len,
                max_rows,
                max_rows_per_group: per_group,
                ..ParseOptions::default()
            };
            if alias {
                opts.column_map.insert("a".into(), "sku".into());
                opts.column_map.insert("b".into(), "not_a_column".into());
            }
            opts
        })
}

/// Cells likely to hit edge cases: quotes, delimiters, newlines, bad UTF-8, numbers, dates.
fn cell() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "0",
            "-1",
            "+3",
            "3.5",
            "1e9",
            "99999999999999999999",
            "12.50",
            "-0.01",
            "US",
            "us",
            "XX",
            "USD",
            "ABC",
            "2024-03-15",
            "2024-03-10 02:30",
            "03/15/2024",
            "2024-01-15T10:00:00Z",
            "cancel",
            "create",
            "Priority",
            "036000291452",
            "036000291453",
            "PO-1",
            "PO-2",
            "T1",
            "A",
            "\"",
            "\"\"",
            "\"a,b\"",
            "\"x\ny\"",
            "\r",
            "\u{feff}",
            "=1+1",
            "\u{1b}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

const NAMES: &[&str] = &[
    "sku",
    "quantity",
    "name",
    "barcode",
    "order_ref",
    "order_date",
    "ship_name",
    "ship_address1",
    "ship_city",
    "ship_country",
    "shipping_speed",
    "price",
    "currency",
    "action",
    "fulfillment_id",
    "shipped_at",
    "carrier",
    "tracking_number",
    "cost",
    "weight",
    "qty",
    "item",
    "cust_ref",
    "tracking_no",
    "a",
    "b",
    "",
    "\u{feff}sku",
];

/// A CSV-ish file: a header of plausible names, then rows of edge-case cells, joined with
/// assorted delimiters and line endings.
fn csvish() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..12),
        prop::collection::vec(prop::collection::vec(cell(), 0..12), 0..12),
        prop::sample::select(vec![",", ";", "\t"]),
        prop::sample::select(vec!["\n", "\r\n", "\r", ""]),
    )
        .prop_map(|(header, rows, delim, eol)| {
            let mut out = header.join(delim).into_bytes();
            for row in rows {
                out.extend_from_slice(eol.as_bytes());
                out.extend(row.join(delim.as_bytes()));
            }
            out
        })
}

fn full_header(kind: Kind) -> Vec<u8> {
    formats::columns(kind).iter().map(|c| c.name).collect::<Vec<_>>().join(",").into_bytes()
}

/// A complete header followed by random rows, so the deep validation paths are reached.
fn with_full_header() -> impl Strategy<Value = (Kind, Vec<u8>)> {
    (prop::sample::select(Kind::ALL.to_vec()), prop::collection::vec(prop::collection::vec(cell(), 0..20), 0..20))
        .prop_map(|(kind, rows)| {
            let mut out = full_header(kind);
            for row in rows {
                out.push(b'\n');
                out.extend(row.join(&b","[..]));
            }
            (kind, out)
        })
}

/// `STITCH_BRIDGE_FUZZ_CASES` scales the run (default 1000 per property).
fn cases() -> u32 {
    std::env::var("STITCH_BRIDGE_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..600), opts in odd_options()) {
        for kind in Kind::ALL {
            exercise(kind, &input, &ParseOptions::default());
            exercise(kind, &input, &opts);
        }
    }

    #[test]
    fn csv_like_input(input in csvish(), opts in odd_options()) {
        for kind in Kind::ALL {
            exercise(kind, &input, &ParseOptions::default());
            exercise(kind, &input, &opts);
        }
    }

    #[test]
    fn valid_header_random_rows((kind, input) in with_full_header(), opts in odd_options()) {
        exercise(kind, &input, &ParseOptions::default());
        exercise(kind, &input, &ParseOptions { delimiter: b',', ..opts });
    }
}
