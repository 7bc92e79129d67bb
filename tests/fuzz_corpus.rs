//! Real-world oddities (`tests/corpus/`, plus a few generated at test time because of their
//! size): no panic, and each is classified sensibly: accepted as what it says, or refused with
//! a code that tells the warehouse what to fix.

use stitch_bridge::formats::{self, Kind, ParseOptions, Record};

#[derive(Debug, Default)]
struct Outcome {
    file_rejected: Option<&'static str>,
    accepted: Vec<Record>,
    rejected_codes: Vec<&'static str>,
    warnings: usize,
}

fn classify(kind: Kind, bytes: &[u8], opts: &ParseOptions) -> Outcome {
    let mut out = Outcome::default();
    let units = match formats::parse(kind, bytes, opts) {
        Ok(u) => u,
        Err(r) => {
            out.file_rejected = Some(r.code.as_str());
            return out;
        }
    };
    out.warnings = units.warnings().len();
    for u in units {
        match u {
            Err(r) => {
                out.file_rejected = Some(r.code.as_str());
                break;
            }
            Ok(u) => match u.result {
                Ok(rec) => out.accepted.push(rec),
                Err(errs) => out.rejected_codes.extend(errs.iter().map(|e| e.code.as_str())),
            },
        }
    }
    out
}

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name)).unwrap()
}

fn skus(o: &Outcome) -> Vec<String> {
    o.accepted.iter().filter_map(|r| if let Record::Inventory(i) = r { Some(i.sku.clone()) } else { None }).collect()
}

fn inv(name: &str) -> Outcome {
    classify(Kind::Inventory, &corpus(name), &ParseOptions::default())
}

#[test]
fn every_corpus_file_parses_as_every_kind_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        for kind in Kind::ALL {
            for delimiter in [b',', b';', b'\t'] {
                let _ = classify(kind, &bytes, &ParseOptions { delimiter, ..ParseOptions::default() });
            }
        }
        n += 1;
    }
    assert!(n >= 14, "corpus present ({n} files)");
}

#[test]
fn byte_order_marks_and_line_endings() {
    let o = inv("inventory_utf8_bom.csv");
    assert_eq!((o.file_rejected, skus(&o)), (None, vec!["WIDGET-RED".to_string(), "WIDGET-BLUE".into()]));
    let o = inv("inventory_mixed_line_endings.csv");
    assert_eq!(skus(&o), ["WIDGET-RED", "WIDGET-BLUE", "GADGET-1"]);
    let o = classify(Kind::Orders, &corpus("orders_bom_crlf.csv"), &ParseOptions::default());
    assert_eq!((o.file_rejected, o.accepted.len(), o.rejected_codes.len()), (None, 3, 0));
    // UTF-16 is refused as a whole, with a message saying to save as UTF-8.
    assert_eq!(inv("inventory_utf16le_bom.csv").file_rejected, Some("bad_encoding"));
}

#[test]
fn excel_separator_line_is_refused_not_misread() {
    // `sep=;` is not supported: the file is refused (the header lacks columns), never read
    // with a wrong delimiter.
    let o = inv("inventory_excel_sep_line.csv");
    assert_eq!(o.file_rejected, Some("missing_column"));
    assert!(o.accepted.is_empty());
}

#[test]
fn nul_bytes_emoji_formulas_and_control_characters() {
    let o = inv("inventory_nul_bytes.csv");
    assert_eq!(o.rejected_codes, ["bad_integer"], "a NUL inside a number is a bad number");
    let o = inv("inventory_emoji.csv");
    assert_eq!(skus(&o), ["WIDGET-🚀", "WIDGET-BLUE"]);
    // Formula-looking cells are data: accepted as text (outputs neutralise them).
    let o = inv("inventory_formula_cells.csv");
    assert_eq!(o.accepted.len(), 4, "{o:?}");
    let o = classify(Kind::Shipments, &corpus("shipments_trailing_garbage.csv"), &ParseOptions::default());
    assert_eq!((o.accepted.len(), o.rejected_codes.as_slice()), (1, &["ragged_row"][..]));
}

#[test]
fn empty_header_only_and_binary_files() {
    assert_eq!(inv("empty.csv").file_rejected, Some("empty_file"));
    let o = inv("header_only.csv");
    assert_eq!((o.file_rejected, o.accepted.len(), o.rejected_codes.len()), (None, 0, 0));
    assert_eq!(inv("binary_garbage.csv").file_rejected, Some("missing_column"));
}

#[test]
fn ten_thousand_columns() {
    let mut text = String::from("sku,quantity");
    for i in 0..10_000 {
        text.push_str(&format!(",extra_{i}"));
    }
    text.push('\n');
    for r in 0..3 {
        text.push_str(&format!("SKU-{r},{r}"));
        text.push_str(&",x".repeat(10_000));
        text.push('\n');
    }
    let o = classify(Kind::Inventory, text.as_bytes(), &ParseOptions::default());
    assert_eq!(o.accepted.len(), 3, "extra columns are ignored");
    assert!(o.warnings >= 1, "and reported as unused");
    // A 10k-column row under a 2-column header is ragged, not a crash.
    let text = format!("sku,quantity\nSKU-1,1{}\n", ",x".repeat(10_000));
    let o = classify(Kind::Inventory, text.as_bytes(), &ParseOptions::default());
    assert!(o.accepted.is_empty() && (o.file_rejected.is_some() || !o.rejected_codes.is_empty()), "{o:?}");
}

#[test]
fn huge_quoted_field_is_refused_by_the_field_limit() {
    let big = "y".repeat(2 * 1024 * 1024);
    let text = format!("sku,quantity,name\nSKU-1,1,\"{big}\"\nSKU-2,2,ok\n");
    let o = classify(Kind::Inventory, text.as_bytes(), &ParseOptions::default());
    let codes: Vec<_> = o.rejected_codes.iter().copied().chain(o.file_rejected).collect();
    assert!(codes.contains(&"field_too_long"), "{codes:?}");
    assert!(!skus(&o).contains(&"SKU-1".to_string()));
}

// ---- formerly known gaps (RELIABILITY.md), now closed ------------------------------------------

#[test]
fn cr_only_line_endings_are_not_silently_empty() {
    let o = inv("inventory_cr_only.csv");
    assert!(o.file_rejected.is_some() || o.accepted.len() == 2, "{o:?}");
}

#[test]
fn unterminated_quote_does_not_swallow_rows() {
    let o = inv("unterminated_quote.csv");
    assert!(o.file_rejected.is_some() || !o.rejected_codes.is_empty(), "{o:?}");
}
