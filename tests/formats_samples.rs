//! Published samples and schemas agree with the code; the error report is safe to open.

use std::path::Path;

use stitch_bridge::formats::{self, codes, columns, ColType, Kind, ParseOptions, Presence, RawRow};
use stitch_bridge::report::ErrorWriter;

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples").join(name)).expect("sample exists")
}

/// (accepted units, [(line, column, code)]) for a sample.
fn check(kind: Kind, name: &str) -> (usize, Vec<(u64, String, String)>) {
    let bytes = sample(name);
    let units = formats::parse(kind, bytes.as_slice(), &ParseOptions::default()).expect("header ok");
    let mut ok = 0;
    let mut errs = Vec::new();
    for u in units {
        match u.expect("file not rejected").result {
            Ok(_) => ok += 1,
            Err(es) => errs.extend(es.into_iter().map(|e| (e.line, e.column, e.code.as_str().to_string()))),
        }
    }
    (ok, errs)
}

fn e(line: u64, column: &str, code: &str) -> (u64, String, String) {
    (line, column.into(), code.into())
}

#[test]
fn good_samples_are_clean() {
    assert_eq!(check(Kind::Inventory, "inventory_good.csv"), (10, vec![]));
    assert_eq!(check(Kind::Orders, "orders_good.csv"), (3, vec![]));
    assert_eq!(check(Kind::Shipments, "shipments_good.csv"), (4, vec![]));
}

#[test]
fn broken_inventory_sample() {
    assert_eq!(
        check(Kind::Inventory, "inventory_broken.csv"),
        (
            2,
            vec![
                e(3, "quantity", "bad_integer"),
                e(4, "sku", "missing_value"),
                e(5, "quantity", "negative_quantity"),
                e(6, "barcode", "bad_barcode"),
                e(7, "sku", "duplicate_sku"),
                e(10, "extra_1", "ragged_row"), // line 8 holds a two-line quoted name
            ]
        )
    );
}

#[test]
fn broken_orders_sample() {
    assert_eq!(
        check(Kind::Orders, "orders_broken.csv"),
        (
            2,
            vec![
                e(2, "order_ref", "group_rejected"),
                e(3, "ship_country", "bad_country"),
                e(3, "ship_country", "inconsistent_order_header"),
                e(4, "shipping_speed", "bad_choice"),
                e(4, "quantity", "zero_quantity"),
                e(5, "order_ref", "group_rejected"),
                e(6, "ship_city", "inconsistent_order_header"),
                e(8, "order_ref", "order_not_contiguous"),
                e(10, "order_date", "bad_date"),
                e(10, "price", "negative_amount"),
            ]
        )
    );
}

#[test]
fn broken_shipments_sample() {
    assert_eq!(
        check(Kind::Shipments, "shipments_broken.csv"),
        (
            0,
            vec![
                e(2, "tracking_number", "group_rejected"),
                e(3, "quantity", "bad_integer"),
                e(4, "shipped_at", "bad_date"),
                e(5, "fulfillment_id", "missing_value"),
                e(6, "tracking_number", "group_rejected"),
                e(7, "cost", "inconsistent_shipment_header"),
                e(8, "carrier", "missing_value"),
                e(8, "weight", "negative_amount"),
            ]
        )
    );
}

#[test]
fn schemas_match_column_tables() {
    for kind in Kind::ALL {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(format!("{}.json", kind.as_str()));
        let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let fields = schema["fields"].as_array().unwrap();
        let in_schema: Vec<(String, bool, String)> = fields
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["constraints"]["required"].as_bool().unwrap_or(false),
                    f["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let in_code: Vec<(String, bool, String)> = columns(kind)
            .iter()
            .map(|c| {
                let ty = match c.ty {
                    ColType::Integer => "integer",
                    ColType::Decimal => "number",
                    ColType::Text | ColType::Date => "string",
                };
                (c.name.to_string(), c.presence == Presence::Required, ty.to_string())
            })
            .collect();
        assert_eq!(in_schema, in_code, "{}", kind.as_str());
        for f in fields {
            let enum_of = |v: &serde_json::Value| -> Vec<String> {
                v["constraints"]["enum"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
            };
            match f["name"].as_str().unwrap() {
                "ship_country" => assert_eq!(enum_of(f), codes::COUNTRIES.to_vec()),
                "currency" => assert_eq!(enum_of(f), codes::CURRENCIES.to_vec()),
                _ => {}
            }
        }
        if kind == Kind::Inventory {
            assert_eq!(schema["primaryKey"], serde_json::json!(["sku"]));
        }
    }
}

#[test]
fn error_report_has_bom_and_neutralised_cells() {
    let header = vec!["sku".to_string(), "quantity".to_string()];
    let mut w = ErrorWriter::new(Vec::new(), &header).unwrap();
    let row = RawRow { line: 2, fields: vec!["=HYPERLINK(\"x\")", "-5"].into() };
    w.write(&row, 2, "quantity", "negative_quantity", "quantity on hand cannot be negative, got -5").unwrap();
    let short = RawRow { line: 3, fields: vec!["@A\u{1b}"].into() };
    w.write(&short, 3, "", "ragged_row", "this row has 1 values").unwrap();
    let out = String::from_utf8(w.finish().unwrap()).unwrap();
    assert_eq!(
        out,
        "\u{feff}sku,quantity,line,column,code,message\n\
         \"'=HYPERLINK(\"\"x\"\")\",'-5,2,quantity,negative_quantity,\"quantity on hand cannot be negative, got -5\"\n\
         '@A\\x1b,,3,,ragged_row,this row has 1 values\n"
    );
}
