//! Parsing behaviour on real bytes: framing, limits, every error code with its line and column.

use stitch_bridge::formats::{
    self, ErrorCode, FileRejection, Kind, OrderAction, ParseOptions, Record, RecordError,
    ShippingSpeed, Unit,
};

struct Parsed {
    units: Vec<Unit>,
    warnings: Vec<RecordError>,
    header: Vec<String>,
}

/// Parses fully; a mid-stream rejection is returned as `Err` like an up-front one.
fn parse_with(kind: Kind, input: &[u8], opts: &ParseOptions) -> Result<Parsed, FileRejection> {
    let mut it = formats::parse(kind, input, opts)?;
    let mut units = Vec::new();
    for u in &mut it {
        units.push(u?);
    }
    Ok(Parsed {
        units,
        warnings: it.warnings().to_vec(),
        header: it.header().to_vec(),
    })
}

fn parse(kind: Kind, input: &str) -> Parsed {
    parse_with(kind, input.as_bytes(), &ParseOptions::default()).expect("file accepted")
}

fn reject(kind: Kind, input: &[u8], opts: &ParseOptions) -> FileRejection {
    match parse_with(kind, input, opts) {
        Ok(_) => panic!("file should be rejected"),
        Err(e) => e,
    }
}

/// (line, column, code) of every record error, in order.
fn errors(p: &Parsed) -> Vec<(u64, String, &'static str)> {
    p.units
        .iter()
        .filter_map(|u| u.result.as_ref().err())
        .flatten()
        .map(|e| (e.line, e.column.clone(), e.code.as_str()))
        .collect()
}

fn e(line: u64, column: &str, code: &'static str) -> (u64, String, &'static str) {
    (line, column.to_string(), code)
}

fn records(p: &Parsed) -> Vec<&Record> {
    p.units
        .iter()
        .filter_map(|u| u.result.as_ref().ok())
        .collect()
}

fn inventory(p: &Parsed) -> Vec<(String, i64)> {
    records(p)
        .into_iter()
        .map(|r| match r {
            Record::Inventory(i) => (i.sku.clone(), i.quantity),
            other => panic!("not inventory: {other:?}"),
        })
        .collect()
}

// ---------- framing ----------

#[test]
fn bom_crlf_blank_lines_and_trimming() {
    let p = parse(
        Kind::Inventory,
        "\u{feff}\"SKU\" , Quantity \r\nA,1\r\n\r\n  B  , 2 \r\n   \r\n,,\r\n",
    );
    assert_eq!(inventory(&p), vec![("A".into(), 1), ("B".into(), 2)]);
    // A quoted cell followed by spaces keeps them (CSV rules); names are trimmed when matched.
    assert_eq!(p.header, vec!["SKU ".to_string(), " Quantity ".to_string()]);
    assert_eq!(p.units[1].rows[0].line, 4);
    assert_eq!(
        p.units[1].rows[0].fields,
        vec!["  B  ".to_string(), " 2 ".to_string()]
    );
}

#[test]
fn embedded_newlines_shift_line_numbers() {
    let p = parse(
        Kind::Inventory,
        "sku,name,quantity\nA,\"two\nlines\",1\nB,\"x, y\",oops\n",
    );
    assert_eq!(errors(&p), vec![e(4, "quantity", "bad_integer")]);
    let msg = &p.units[1].result.as_ref().unwrap_err()[0].message;
    assert_eq!(msg, "quantity must be a whole number, got 'oops'");
}

#[test]
fn crlf_embedded_newlines_and_missing_final_newline() {
    let p = parse(
        Kind::Inventory,
        "sku,name,quantity\r\n\r\nA,\"two\r\nlines\",1\r\nB,n,x",
    );
    assert_eq!(errors(&p), vec![e(5, "quantity", "bad_integer")]);
    assert_eq!(p.units[0].rows[0].line, 3);
    assert_eq!(p.units[0].rows[0].fields[1], "two\r\nlines");
    assert_eq!(p.units[1].rows[0].fields[2], "x");
}

#[test]
fn header_only_is_fine_and_empty_is_rejected() {
    assert!(parse(Kind::Inventory, "sku,quantity\n").units.is_empty());
    let r = reject(Kind::Inventory, b"", &ParseOptions::default());
    assert_eq!(r.code, ErrorCode::EmptyFile);
    assert_eq!(
        reject(Kind::Inventory, b"\n\n", &ParseOptions::default()).code,
        ErrorCode::EmptyFile
    );
}

#[test]
fn missing_columns_are_all_named() {
    let r = reject(
        Kind::Orders,
        b"order_ref,sku,quantity\n",
        &ParseOptions::default(),
    );
    assert_eq!(r.code, ErrorCode::MissingColumn);
    assert_eq!(r.line, Some(1));
    for c in [
        "order_date",
        "ship_name",
        "ship_address1",
        "ship_city",
        "ship_country",
    ] {
        assert!(r.message.contains(c), "{c} in {}", r.message);
    }
    let r = reject(
        Kind::Shipments,
        b"sku,quantity,shipped_at,carrier,tracking_number\n",
        &ParseOptions::default(),
    );
    assert_eq!(r.code, ErrorCode::MissingColumn);
    assert!(
        r.message.contains("fulfillment_id or order_ref"),
        "{}",
        r.message
    );
}

#[test]
fn duplicate_column_rejects_file() {
    let r = reject(
        Kind::Inventory,
        b"sku,item,quantity\n",
        &ParseOptions::default(),
    );
    assert_eq!(r.code, ErrorCode::DuplicateColumn);
    assert_eq!(r.column.as_deref(), Some("sku"));
}

#[test]
fn unknown_columns_warn_once_and_keep_raw_values() {
    let p = parse(Kind::Inventory, "sku,quantity,Colour\nA,1,red\nB,2,blue\n");
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(
        (p.warnings[0].line, p.warnings[0].column.as_str()),
        (1, "Colour")
    );
    assert_eq!(p.warnings[0].code, ErrorCode::UnknownColumn);
    assert_eq!(p.units[1].rows[0].fields[2], "blue");
    assert_eq!(inventory(&p).len(), 2);
}

#[test]
fn bad_utf8_rejects_the_row_not_the_file() {
    let p = parse_with(
        Kind::Inventory,
        b"sku,quantity\nA\xff,1\nB,2\n",
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(errors(&p), vec![e(2, "sku", "bad_encoding")]);
    assert_eq!(p.units[0].rows[0].fields[0], "A\u{fffd}");
    assert_eq!(inventory(&p), vec![("B".into(), 2)]);
    let r = reject(
        Kind::Inventory,
        b"sku,qu\xe9ntity\nA,1\n",
        &ParseOptions::default(),
    );
    assert_eq!((r.code, r.line), (ErrorCode::BadEncoding, Some(1)));
}

#[test]
fn ragged_rows() {
    let p = parse(Kind::Inventory, "sku,quantity\nA,1,x\nB\nC,3\n");
    assert_eq!(
        errors(&p),
        vec![e(2, "", "ragged_row"), e(3, "", "ragged_row")]
    );
    assert_eq!(inventory(&p), vec![("C".into(), 3)]);
}

#[test]
fn field_too_long() {
    let opts = ParseOptions {
        max_field_len: 5,
        ..Default::default()
    };
    let p = parse_with(
        Kind::Inventory,
        b"sku,quantity,name\nABCDEF,1,x\nABCDE,1,\xc3\xa9\xc3\xa9\xc3\xa9\n",
        &opts,
    )
    .unwrap();
    // Length counts characters, not bytes: 3 accented letters fit in 5.
    assert_eq!(errors(&p), vec![e(2, "sku", "field_too_long")]);
}

#[test]
fn file_too_large_is_detected_while_streaming() {
    let mut body = String::from("sku,quantity\n");
    for i in 0..20_000 {
        body.push_str(&format!("SKU-{i},1\n"));
    }
    let opts = ParseOptions {
        max_file_bytes: 100_000,
        ..Default::default()
    };
    let mut it = formats::parse(Kind::Inventory, body.as_bytes(), &opts).unwrap();
    let mut ok = 0;
    let mut rejection = None;
    for u in &mut it {
        match u {
            Ok(_) => ok += 1,
            Err(r) => rejection = Some(r),
        }
    }
    assert_eq!(rejection.map(|r| r.code), Some(ErrorCode::FileTooLarge));
    assert!(
        ok > 1000 && ok < 20_000,
        "stopped near the limit, after {ok} rows"
    );
    assert!(it.next().is_none(), "iteration ends after a rejection");
}

#[test]
fn too_many_rows() {
    let opts = ParseOptions {
        max_rows: 2,
        ..Default::default()
    };
    let r = reject(Kind::Inventory, b"sku,quantity\nA,1\n\nB,2\nC,3\n", &opts);
    assert_eq!((r.code, r.line), (ErrorCode::TooManyRows, Some(5)));
    assert!(parse_with(Kind::Inventory, b"sku,quantity\nA,1\nB,2\n", &opts).is_ok());
}

#[test]
fn aliases_column_map_and_delimiter() {
    let p = parse(Kind::Inventory, "Item,QTY,UPC\nA,4,036000291452\n");
    assert_eq!(inventory(&p), vec![("A".into(), 4)]);
    let mut opts = ParseOptions {
        delimiter: b';',
        ..Default::default()
    };
    opts.column_map.insert("artikel".into(), "sku".into());
    opts.column_map.insert("bestand".into(), "quantity".into());
    let p = parse_with(Kind::Inventory, b"Artikel;Bestand\nA;5\n\"B;1\";6\n", &opts).unwrap();
    assert_eq!(inventory(&p), vec![("A".into(), 5), ("B;1".into(), 6)]);
}

#[test]
fn sniff_and_folders() {
    assert_eq!(formats::kind_for_folder("Orders"), Some(Kind::Orders));
    assert_eq!(formats::kind_for_folder("results"), None);
    let h: Vec<String> = "item_sku,qty".split(',').map(String::from).collect();
    assert_eq!(formats::sniff(&h), Some(Kind::Inventory));
    assert!(formats::is_delta_name("stock_DELTA.csv"));
}

// ---------- inventory ----------

#[test]
fn inventory_errors() {
    let p = parse(
        Kind::Inventory,
        "sku,quantity,barcode\nA,-1,\n,2,\nB,x,\nC,1,036000291453\nA,3,\nD,,\n",
    );
    assert_eq!(
        errors(&p),
        vec![
            e(2, "quantity", "negative_quantity"),
            e(3, "sku", "missing_value"),
            e(4, "quantity", "bad_integer"),
            e(5, "barcode", "bad_barcode"),
            e(6, "sku", "duplicate_sku"),
            e(7, "quantity", "missing_value"),
        ]
    );
}

#[test]
fn inventory_delta_allows_signed_adjustments() {
    let opts = ParseOptions {
        inventory_delta: true,
        ..Default::default()
    };
    let p = parse_with(Kind::Inventory, b"sku,quantity\nA,-3\nB,0\nC,+4\n", &opts).unwrap();
    assert_eq!(
        inventory(&p),
        vec![("A".into(), -3), ("B".into(), 0), ("C".into(), 4)]
    );
}

// ---------- orders ----------

const ORDER_HEADER: &str =
    "order_ref,order_date,ship_name,ship_address1,ship_city,ship_country,sku,quantity,price,currency,shipping_speed,action\n";

fn orders(body: &str) -> Parsed {
    parse(Kind::Orders, &format!("{ORDER_HEADER}{body}"))
}

#[test]
fn orders_group_contiguous_rows() {
    let p = orders(
        "PO-1,2024-03-15,Al,1 Main,Town,us,A,2,9.99,usd,expedited,\n\
         PO-1,2024-03-15,Al,1 Main,Town,US,B,1,,USD,Expedited,create\n\
         PO-2,03/16/2024,Bo,2 Main,City,CA,A,1,,,,\n",
    );
    assert!(errors(&p).is_empty(), "{:?}", errors(&p));
    let recs = records(&p);
    assert_eq!(recs.len(), 2);
    let Record::Order(o) = recs[0] else { panic!() };
    assert_eq!(
        (o.order_ref.as_str(), o.line, o.action),
        ("PO-1", 2, OrderAction::Create)
    );
    assert_eq!(o.shipping_speed, ShippingSpeed::Expedited);
    assert_eq!(o.currency.as_deref(), Some("USD"));
    assert_eq!(o.ship_to.as_ref().map(|a| a.country.as_str()), Some("US"));
    assert_eq!(
        o.items
            .iter()
            .map(|i| (i.line, i.sku.as_str(), i.quantity))
            .collect::<Vec<_>>(),
        vec![(2, "A", 2), (3, "B", 1)]
    );
    assert_eq!(o.items[0].price.map(|d| d.to_string()), Some("9.99".into()));
    assert_eq!(p.units[0].rows.len(), 2);
    let Record::Order(o2) = recs[1] else { panic!() };
    assert_eq!(o2.shipping_speed, ShippingSpeed::Standard);
    assert_eq!(
        o2.order_date.map(|d| d.to_rfc3339()),
        Some("2024-03-16T00:00:00+00:00".into())
    );
}

#[test]
fn one_bad_row_rejects_the_whole_order() {
    let p = orders(
        "PO-1,2024-03-15,Al,1 Main,Town,US,A,2,,,,\n\
         PO-1,2024-03-15,Al,1 Main,Town,US,B,0,,,,\n\
         PO-1,2024-03-15,Al,1 Main,Town,US,C,1,,,,\n\
         PO-2,2024-03-15,Bo,2 Main,City,US,A,1,,,,\n",
    );
    assert_eq!(
        errors(&p),
        vec![
            e(2, "order_ref", "group_rejected"),
            e(3, "quantity", "zero_quantity"),
            e(4, "order_ref", "group_rejected")
        ]
    );
    let msg = &p.units[0].result.as_ref().unwrap_err()[0].message;
    assert!(msg.contains("line 3 of the same order"), "{msg}");
    assert_eq!(p.units[0].rows.len(), 3);
    assert_eq!(records(&p).len(), 1);
}

#[test]
fn order_field_errors() {
    let p = orders(
        "PO-1,someday,Al,1 Main,Town,XX,A,-1,-2,ABC,Rocket,\n\
         PO-2,2024-03-15,,1 Main,Town,US,A,1,1.2.3,,,fly\n",
    );
    assert_eq!(
        errors(&p),
        vec![
            e(2, "order_date", "bad_date"),
            e(2, "ship_country", "bad_country"),
            e(2, "shipping_speed", "bad_choice"),
            e(2, "currency", "bad_currency"),
            e(2, "quantity", "negative_quantity"),
            e(2, "price", "negative_amount"),
            e(3, "action", "bad_choice"),
        ]
    );
    let p = orders("PO-3,2024-03-15,,1 Main,Town,US,A,1,1.2.3,,,\n");
    assert_eq!(
        errors(&p),
        vec![
            e(2, "ship_name", "missing_value"),
            e(2, "price", "bad_decimal")
        ]
    );
}

#[test]
fn inconsistent_header_and_not_contiguous() {
    let p = orders(
        "PO-1,2024-03-15,Al,1 Main,Town,US,A,1,,,,\n\
         PO-1,2024-03-15,Al,1 Main,Other,US,B,1,,,,\n\
         PO-2,2024-03-15,Bo,2 Main,City,US,A,1,,,,\n\
         PO-1,2024-03-15,Al,1 Main,Town,US,C,1,,,,\n",
    );
    assert_eq!(
        errors(&p),
        vec![
            e(2, "order_ref", "group_rejected"),
            e(3, "ship_city", "inconsistent_order_header"),
            e(5, "order_ref", "order_not_contiguous"),
        ]
    );
    assert_eq!(records(&p).len(), 1);
}

#[test]
fn cancel_rows_need_only_order_ref() {
    let p = orders("PO-9,,,,,,,,,,,CANCEL\nPO-9,,,,,,X,,,,,cancel\nPO-8,,,,,,,,,,,create\n");
    let recs = records(&p);
    assert_eq!(recs.len(), 1);
    let Record::Order(o) = recs[0] else { panic!() };
    assert_eq!(
        (o.order_ref.as_str(), o.action, o.items.len()),
        ("PO-9", OrderAction::Cancel, 0)
    );
    assert!(errors(&p).contains(&e(4, "order_date", "missing_value")));
    let mixed = orders("PO-7,,,,,,,,,,,cancel\nPO-7,2024-03-15,Al,1 Main,Town,US,A,1,,,,\n");
    assert!(errors(&mixed).contains(&e(3, "action", "inconsistent_order_header")));
}

#[test]
fn group_size_limit() {
    let opts = ParseOptions {
        max_rows_per_group: 2,
        ..Default::default()
    };
    let row = "PO-1,2024-03-15,Al,1 Main,Town,US,A,1,,,,\n";
    let body = format!(
        "{ORDER_HEADER}{row}{row}{row}{row}{row}PO-2,2024-03-15,Al,1 Main,Town,US,A,1,,,,\n"
    );
    let p = parse_with(Kind::Orders, body.as_bytes(), &opts).unwrap();
    let codes: Vec<_> = errors(&p).into_iter().map(|(l, _, c)| (l, c)).collect();
    assert_eq!(
        codes,
        (2..=6).map(|l| (l, "group_too_large")).collect::<Vec<_>>()
    );
    assert_eq!(records(&p).len(), 1, "the next order is unaffected");
}

#[test]
fn dates_use_time_zone_and_custom_format() {
    let opts = ParseOptions {
        timezone: "Europe/Berlin".parse().unwrap(),
        date_format: Some("%d.%m.%Y %H:%M".into()),
        ..Default::default()
    };
    let body = format!(
        "{ORDER_HEADER}PO-1,15.07.2024 10:00,Al,1 Main,Town,DE,A,1,,,,\nPO-2,2024-01-15 10:00,Al,1 Main,Town,DE,A,1,,,,\nPO-3,2024-01-15T10:00:00+02:00,Al,1 Main,Town,DE,A,1,,,,\n"
    );
    let p = parse_with(Kind::Orders, body.as_bytes(), &opts).unwrap();
    let dates: Vec<String> = records(&p)
        .into_iter()
        .map(|r| match r {
            Record::Order(o) => o.order_date.map(|d| d.to_rfc3339()).unwrap_or_default(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        dates,
        vec![
            "2024-07-15T10:00:00+02:00",
            "2024-01-15T10:00:00+01:00",
            "2024-01-15T10:00:00+02:00"
        ]
    );
}

#[test]
fn cartrover_aliases_for_orders_and_shipments() {
    let p = parse(
        Kind::Orders,
        "cust_ref,order_date,ship_to_name,ship_address_1,ship_city,ship_country,item_sku,qty\nR1,2024-03-15,Al,1 Main,Town,US,A,1\n",
    );
    assert_eq!(records(&p).len(), 1, "{:?}", errors(&p));
    let p = parse(
        Kind::Shipments,
        "order_number,item,qty,ship_date,ship_via,tracking_no\nR1,A,1,2024-03-16,UPS,1Z1\n",
    );
    let Record::Shipment(s) = records(&p)[0] else {
        panic!()
    };
    assert_eq!(
        (
            s.order_ref.as_deref(),
            s.carrier.as_str(),
            s.tracking_number.as_str()
        ),
        (Some("R1"), "UPS", "1Z1")
    );
}

// ---------- shipments ----------

const SHIP_HEADER: &str =
    "fulfillment_id,order_ref,sku,quantity,shipped_at,carrier,tracking_number,cost,weight\n";

#[test]
fn shipments_group_by_reference_and_tracking() {
    let p = parse(
        Kind::Shipments,
        &format!(
            "{SHIP_HEADER},PO-1,A,1,2024-03-16,UPS,T1,5.00,1\n,PO-1,B,2,2024-03-16,UPS,T1,5.00,1\n,PO-1,C,1,2024-03-16,UPS,T2,,\nF-1,,A,1,2024-03-16 10:00,FedEx,T3,,\n"
        ),
    );
    assert!(errors(&p).is_empty(), "{:?}", errors(&p));
    let shipments: Vec<_> = records(&p)
        .into_iter()
        .map(|r| match r {
            Record::Shipment(s) => (
                s.line,
                s.tracking_number.clone(),
                s.items.len(),
                s.fulfillment_id.clone(),
            ),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        shipments,
        vec![
            (2, "T1".into(), 2, None),
            (4, "T2".into(), 1, None),
            (5, "T3".into(), 1, Some("F-1".into()))
        ]
    );
}

#[test]
fn shipment_errors_and_whole_shipment_rejection() {
    let p = parse(
        Kind::Shipments,
        &format!(
            "{SHIP_HEADER},PO-1,A,1,2024-03-16,UPS,T1,5.00,\n,PO-1,B,1,2024-03-16,UPS,T1,6.00,\n,,C,1,2024-03-16,UPS,T9,,\n,PO-2,D,0,,,T4,x,\n,PO-1,E,1,2024-03-16,UPS,T1,5.00,\n"
        ),
    );
    assert_eq!(
        errors(&p),
        vec![
            e(2, "tracking_number", "group_rejected"),
            e(3, "cost", "inconsistent_shipment_header"),
            e(4, "fulfillment_id", "missing_value"),
            e(5, "quantity", "zero_quantity"),
            e(5, "shipped_at", "missing_value"),
            e(5, "carrier", "missing_value"),
            e(5, "cost", "bad_decimal"),
            e(6, "tracking_number", "shipment_not_contiguous"),
        ]
    );
}

#[test]
fn error_codes_are_stable_and_unique() {
    let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
    assert_eq!(ErrorCode::RaggedRow.as_str(), "ragged_row");
    assert!(ErrorCode::UnknownColumn.is_warning() && !ErrorCode::RaggedRow.is_warning());
}
