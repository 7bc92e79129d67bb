//! Parsing behaviour on real bytes: framing, limits, every error code with its line and column.

use std::io::Read;
use stitch_bridge::formats::{
    self, ErrorCode, Fields, FileRejection, Kind, OrderAction, ParseOptions, Record, RecordError, ShippingSpeed, Unit,
};

struct Parsed {
    units: Vec<Unit>,
    warnings: Vec<RecordError>,
    header: Vec<String>,
}

/// Parses fully; a mid-stream rejection is returned as `Err` like an up-front one.
fn collect<R: Read>(units: Result<formats::Units<R>, FileRejection>) -> Result<Parsed, FileRejection> {
    let mut it = units?;
    let mut units = Vec::new();
    for u in &mut it {
        units.push(u?);
    }
    Ok(Parsed { units, warnings: it.warnings().to_vec(), header: it.header().to_vec() })
}

/// Parses on this thread and again with framing on its own thread (`parse_piped`, what
/// `validate` uses); every test here thereby checks that both give exactly the same result.
fn parse_with(kind: Kind, input: &[u8], opts: &ParseOptions) -> Result<Parsed, FileRejection> {
    let here = collect(formats::parse(kind, input, opts));
    let piped = collect(formats::parse_piped(kind, std::io::Cursor::new(input.to_vec()), opts));
    match (&here, &piped) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.units, b.units, "piped units differ");
            assert_eq!(a.warnings, b.warnings, "piped warnings differ");
            assert_eq!(a.header, b.header, "piped header differs");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "piped rejection differs"),
        _ => panic!("piped and in-thread parsing disagree: {:?} / {:?}", here.is_ok(), piped.is_ok()),
    }
    here
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
    p.units.iter().filter_map(|u| u.result.as_ref().ok()).collect()
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
    let p = parse(Kind::Inventory, "\u{feff}\"SKU\" , Quantity \r\nA,1\r\n\r\n  B  , 2 \r\n   \r\n,,\r\n");
    assert_eq!(inventory(&p), vec![("A".into(), 1), ("B".into(), 2)]);
    // A quoted cell followed by spaces keeps them (CSV rules); names are trimmed when matched.
    assert_eq!(p.header, vec!["SKU ".to_string(), " Quantity ".to_string()]);
    assert_eq!(p.units[1].rows[0].line, 4);
    assert_eq!(p.units[1].rows[0].fields, Fields::from(vec!["  B  ", " 2 "]));
}

#[test]
fn embedded_newlines_shift_line_numbers() {
    let p = parse(Kind::Inventory, "sku,name,quantity\nA,\"two\nlines\",1\nB,\"x, y\",oops\n");
    assert_eq!(errors(&p), vec![e(4, "quantity", "bad_integer")]);
    let msg = &p.units[1].result.as_ref().unwrap_err()[0].message;
    assert_eq!(msg, "quantity must be a whole number, got 'oops'");
}

#[test]
fn crlf_embedded_newlines_and_missing_final_newline() {
    let p = parse(Kind::Inventory, "sku,name,quantity\r\n\r\nA,\"two\r\nlines\",1\r\nB,n,x");
    assert_eq!(errors(&p), vec![e(5, "quantity", "bad_integer")]);
    assert_eq!(p.units[0].rows[0].line, 3);
    assert_eq!(p.units[0].rows[0].fields.get(1), Some("two\r\nlines"));
    assert_eq!(p.units[1].rows[0].fields.get(2), Some("x"));
}

#[test]
fn header_only_is_fine_and_empty_is_rejected() {
    assert!(parse(Kind::Inventory, "sku,quantity\n").units.is_empty());
    let r = reject(Kind::Inventory, b"", &ParseOptions::default());
    assert_eq!(r.code, ErrorCode::EmptyFile);
    assert_eq!(r.line, Some(1), "the header's line, the same in every report");
    assert_eq!(reject(Kind::Inventory, b"\n\n", &ParseOptions::default()).code, ErrorCode::EmptyFile);
}

#[test]
fn missing_columns_are_all_named() {
    let r = reject(Kind::Orders, b"order_ref,sku,quantity\n", &ParseOptions::default());
    assert_eq!(r.code, ErrorCode::MissingColumn);
    assert_eq!(r.line, Some(1));
    for c in ["order_date", "ship_name", "ship_address1", "ship_city", "ship_country"] {
        assert!(r.message.contains(c), "{c} in {}", r.message);
    }
    let r = reject(Kind::Shipments, b"sku,quantity,shipped_at,carrier,tracking_number\n", &ParseOptions::default());
    assert_eq!(r.code, ErrorCode::MissingColumn);
    assert!(r.message.contains("fulfillment_id or order_ref"), "{}", r.message);
}

#[test]
fn duplicate_column_rejects_file() {
    let r = reject(Kind::Inventory, b"sku,item,quantity\n", &ParseOptions::default());
    assert_eq!(r.code, ErrorCode::DuplicateColumn);
    assert_eq!(r.column.as_deref(), Some("sku"));
}

#[test]
fn unknown_columns_warn_once_and_keep_raw_values() {
    let p = parse(Kind::Inventory, "sku,quantity,Colour\nA,1,red\nB,2,blue\n");
    assert_eq!(p.warnings.len(), 1);
    assert_eq!((p.warnings[0].line, p.warnings[0].column.as_str()), (1, "Colour"));
    assert_eq!(p.warnings[0].code, ErrorCode::UnknownColumn);
    assert_eq!(p.units[1].rows[0].fields.get(2), Some("blue"));
    assert_eq!(inventory(&p).len(), 2);
}

#[test]
fn bad_utf8_rejects_the_row_not_the_file() {
    let p = parse_with(Kind::Inventory, b"sku,quantity\nA\xff,1\nB,2\n", &ParseOptions::default()).unwrap();
    assert_eq!(errors(&p), vec![e(2, "sku", "bad_encoding")]);
    assert_eq!(p.units[0].rows[0].fields.get(0), Some("A\u{fffd}"));
    assert_eq!(inventory(&p), vec![("B".into(), 2)]);
    let r = reject(Kind::Inventory, b"sku,qu\xe9ntity\nA,1\n", &ParseOptions::default());
    assert_eq!((r.code, r.line), (ErrorCode::BadEncoding, Some(1)));
}

/// The two bytes of 'é' split by a delimiter read as valid UTF-8 when the row is taken whole;
/// each value alone is not, and both are reported.
#[test]
fn a_character_split_by_the_delimiter_is_two_bad_values() {
    let p = parse_with(
        Kind::Inventory,
        b"sku,quantity,name\r\nA\xc3,\xa91,x\r\nB,2,caf\xc3\xa9\r\n",
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(errors(&p), vec![e(2, "sku", "bad_encoding"), e(2, "quantity", "bad_encoding")]);
    assert_eq!(p.units[1].rows[0].fields.get(2), Some("café"), "CR of CRLF dropped");
    assert_eq!(inventory(&p), vec![("B".into(), 2)]);
}

#[test]
fn ragged_rows() {
    let p = parse(Kind::Inventory, "sku,quantity\nA,1,x\nB\nC,3\n");
    assert_eq!(
        errors(&p),
        // Named after the first value beyond the header (its error-file column) or the first
        // value missing.
        vec![e(2, "extra_1", "ragged_row"), e(3, "quantity", "ragged_row")]
    );
    assert_eq!(inventory(&p), vec![("C".into(), 3)]);
}

#[test]
fn field_too_long() {
    let opts = ParseOptions { max_field_len: 5, ..Default::default() };
    let p = parse_with(Kind::Inventory, b"sku,quantity,name\nABCDEF,1,x\nABCDE,1,\xc3\xa9\xc3\xa9\xc3\xa9\n", &opts)
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
    let opts = ParseOptions { max_file_bytes: 100_000, ..Default::default() };
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
    assert!(ok > 1000 && ok < 20_000, "stopped near the limit, after {ok} rows");
    assert!(it.next().is_none(), "iteration ends after a rejection");
}

#[test]
fn too_many_rows() {
    let opts = ParseOptions { max_rows: 2, ..Default::default() };
    let r = reject(Kind::Inventory, b"sku,quantity\nA,1\n\nB,2\nC,3\n", &opts);
    assert_eq!((r.code, r.line), (ErrorCode::TooManyRows, Some(5)));
    assert!(parse_with(Kind::Inventory, b"sku,quantity\nA,1\nB,2\n", &opts).is_ok());
}

#[test]
fn aliases_column_map_and_delimiter() {
    let p = parse(Kind::Inventory, "Item,QTY,UPC\nA,4,036000291452\n");
    assert_eq!(inventory(&p), vec![("A".into(), 4)]);
    let mut opts = ParseOptions { delimiter: b';', ..Default::default() };
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
    let p = parse(Kind::Inventory, "sku,quantity,barcode\nA,-1,\n,2,\nB,x,\nC,1,036000291453\nA,3,\nD,,\n");
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
    let opts = ParseOptions { inventory_delta: true, ..Default::default() };
    let p = parse_with(Kind::Inventory, b"sku,quantity\nA,-3\nB,0\nC,+4\n", &opts).unwrap();
    assert_eq!(inventory(&p), vec![("A".into(), -3), ("B".into(), 0), ("C".into(), 4)]);
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
    assert_eq!((o.order_ref.as_str(), o.line, o.action), ("PO-1", 2, OrderAction::Create));
    assert_eq!(o.shipping_speed, ShippingSpeed::Expedited);
    assert_eq!(o.currency.as_deref(), Some("USD"));
    assert_eq!(o.ship_to.as_ref().map(|a| a.country.as_str()), Some("US"));
    assert_eq!(
        o.items.iter().map(|i| (i.line, i.sku.as_str(), i.quantity)).collect::<Vec<_>>(),
        vec![(2, "A", 2), (3, "B", 1)]
    );
    assert_eq!(o.items[0].price.map(|d| d.to_string()), Some("9.99".into()));
    assert_eq!(p.units[0].rows.len(), 2);
    let Record::Order(o2) = recs[1] else { panic!() };
    assert_eq!(o2.shipping_speed, ShippingSpeed::Standard);
    assert_eq!(o2.order_date.map(|d| d.to_rfc3339()), Some("2024-03-16T00:00:00+00:00".into()));
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
    assert_eq!(errors(&p), vec![e(2, "ship_name", "missing_value"), e(2, "price", "bad_decimal")]);
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
    assert_eq!((o.order_ref.as_str(), o.action, o.items.len()), ("PO-9", OrderAction::Cancel, 0));
    assert!(errors(&p).contains(&e(4, "order_date", "missing_value")));
    let mixed = orders("PO-7,,,,,,,,,,,cancel\nPO-7,2024-03-15,Al,1 Main,Town,US,A,1,,,,\n");
    assert!(errors(&mixed).contains(&e(3, "action", "inconsistent_order_header")));
}

#[test]
fn group_size_limit() {
    let opts = ParseOptions { max_rows_per_group: 2, ..Default::default() };
    let row = "PO-1,2024-03-15,Al,1 Main,Town,US,A,1,,,,\n";
    let body = format!("{ORDER_HEADER}{row}{row}{row}{row}{row}PO-2,2024-03-15,Al,1 Main,Town,US,A,1,,,,\n");
    let p = parse_with(Kind::Orders, body.as_bytes(), &opts).unwrap();
    let codes: Vec<_> = errors(&p).into_iter().map(|(l, _, c)| (l, c)).collect();
    assert_eq!(codes, (2..=6).map(|l| (l, "group_too_large")).collect::<Vec<_>>());
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
    assert_eq!(dates, vec!["2024-07-15T10:00:00+02:00", "2024-01-15T10:00:00+01:00", "2024-01-15T10:00:00+02:00"]);
}

#[test]
fn cartrover_aliases_for_orders_and_shipments() {
    let p = parse(
        Kind::Orders,
        "cust_ref,order_date,ship_to_name,ship_address_1,ship_city,ship_country,item_sku,qty\nR1,2024-03-15,Al,1 Main,Town,US,A,1\n",
    );
    assert_eq!(records(&p).len(), 1, "{:?}", errors(&p));
    let p = parse(Kind::Shipments, "order_number,item,qty,ship_date,ship_via,tracking_no\nR1,A,1,2024-03-16,UPS,1Z1\n");
    let Record::Shipment(s) = records(&p)[0] else { panic!() };
    assert_eq!((s.order_ref.as_deref(), s.carrier.as_str(), s.tracking_number.as_str()), (Some("R1"), "UPS", "1Z1"));
}

// ---------- shipments ----------

const SHIP_HEADER: &str = "fulfillment_id,order_ref,sku,quantity,shipped_at,carrier,tracking_number,cost,weight\n";

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
            Record::Shipment(s) => (s.line, s.tracking_number.clone(), s.items.len(), s.fulfillment_id.clone()),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        shipments,
        vec![(2, "T1".into(), 2, None), (4, "T2".into(), 1, None), (5, "T3".into(), 1, Some("F-1".into()))]
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
fn wrong_delimiter_spreadsheets_and_cancel_only_headers() {
    let r = reject(Kind::Shipments, b"order_ref;sku;qty;ship_date;carrier;tracking_number\n", &ParseOptions::default());
    assert_eq!((r.code, r.line), (ErrorCode::WrongDelimiter, Some(1)));
    // Columns that are simply missing are still missing, whatever punctuation the names have.
    let r = reject(Kind::Inventory, b"sku;code,amount\n", &ParseOptions::default());
    assert_eq!(r.code, ErrorCode::MissingColumn);
    let r = reject(Kind::Inventory, b"PK\x03\x04sku,quantity\n", &ParseOptions::default());
    assert_eq!((r.code, r.line), (ErrorCode::NotCsv, Some(1)));
    // A cancel-only file: only order_ref and action; its create rows are refused one by one.
    let p = parse(Kind::Orders, "order_ref,action\nPO-1,cancel\nPO-2,create\n");
    assert_eq!(records(&p).len(), 1);
    let errs = errors(&p);
    assert!(errs.contains(&e(3, "ship_country", "missing_value")), "{errs:?}");
    assert!(errs.iter().all(|(l, _, _)| *l == 3), "{errs:?}");
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

/// Reads one byte at a time: line-ending detection must not depend on how reads are cut.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((b, rest)), Some(slot)) => {
                *slot = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// (line, sku) of accepted inventory rows and (line, code) of errors.
type Outcome = (Vec<(u64, String)>, Vec<(u64, &'static str)>);

/// The `Outcome` of reading all of `input`.
fn outcome<R: std::io::Read>(input: R) -> Outcome {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    match formats::parse(Kind::Inventory, input, &ParseOptions::default()) {
        Err(r) => bad.push((r.line.unwrap_or(0), r.code.as_str())),
        Ok(units) => {
            for u in units {
                match u {
                    Err(r) => bad.push((r.line.unwrap_or(0), r.code.as_str())),
                    Ok(u) => match u.result {
                        Ok(Record::Inventory(r)) => ok.push((r.line, r.sku)),
                        Ok(_) => unreachable!(),
                        Err(es) => bad.extend(es.iter().map(|e| (e.line, e.code.as_str()))),
                    },
                }
            }
        }
    }
    (ok, bad)
}

#[test]
fn cr_only_line_endings_are_read_as_lines() {
    let cr = b"sku,quantity,name\rA,1,\"two\rlines\"\r\rB,x,b\rC,3,c";
    let (ok, bad) = outcome(&cr[..]);
    assert_eq!(ok, [(2, "A".to_string()), (6, "C".to_string())]);
    assert_eq!(bad, [(5, "bad_integer")]);
    assert_eq!(outcome(Trickle(cr)), (ok, bad), "same when read byte by byte");
    // CRLF and LF files are not touched, however the reads are cut.
    for (text, b_line) in [
        (&b"sku,quantity\r\nA,1\r\n\r\nB,2\r\n"[..], 4),
        (b"sku,quantity\nA,1\n\nB,2", 4),
        (b"sku,quantity\r\nA,1\nB,2\r", 3),
    ] {
        let (ok, bad) = outcome(text);
        assert_eq!(ok, [(2, "A".to_string()), (b_line, "B".to_string())], "{text:?}");
        assert!(bad.is_empty());
        assert_eq!(outcome(Trickle(text)), (ok, bad));
    }
    // A lone CR as the very last byte after a header.
    assert_eq!(outcome(&b"sku,quantity\r"[..]), (vec![], vec![]));
}

#[test]
fn unterminated_quote_rejects_the_file_at_its_line() {
    let text = "sku,quantity,name\nA,1,ok\nB,2,\"never closed\nC,3,c\nD,4,d\n";
    let r = reject(Kind::Inventory, text.as_bytes(), &ParseOptions::default());
    assert_eq!((r.code, r.line), (ErrorCode::UnterminatedQuote, Some(3)));
    assert!(r.message.contains("2 more lines"), "{}", r.message);
    // In the header too, and without a final newline.
    let r = reject(Kind::Inventory, b"sku,\"quantity\nA,1", &ParseOptions::default());
    assert_eq!((r.code, r.line), (ErrorCode::UnterminatedQuote, Some(1)));
    // A closed multi-line value at the very end is fine.
    let p = parse(Kind::Inventory, "sku,quantity,name\nA,1,\"two\nlines\"");
    assert_eq!(inventory(&p), [("A".to_string(), 1)]);
}

/// Inventory text with repeated SKUs (some on rows that are bad for another reason).
fn repeated_skus() -> String {
    let mut text = String::from("sku,quantity\n");
    for i in 0..3000u32 {
        let sku = if i % 11 == 5 { format!("S{}", i / 3) } else { format!("S{i}") };
        let q = if i % 13 == 0 { "x".to_string() } else { i.to_string() };
        text.push_str(&format!("{sku},{q}\n"));
        if i % 500 == 0 {
            text.push_str(",,\n\n");
        }
    }
    text
}

/// What `validate` reports in flat-memory mode: (line, column, code, message) of every error
/// (streamed, then the late repeats), and how many units were accepted.
fn checked_late(text: &str, in_memory: usize) -> (Vec<(u64, String, &'static str, String)>, usize) {
    let opts = ParseOptions::default();
    let mut units = formats::parse(Kind::Inventory, text.as_bytes(), &opts).unwrap().late_duplicates(in_memory);
    let mut errs = Vec::new();
    let mut accepted = 0;
    while let Some(u) = units.next_checked() {
        let u = u.unwrap();
        accepted += usize::from(u.is_accepted());
        errs.extend(u.errors().iter().map(|e| (e.line, e.column.clone(), e.code.as_str(), e.message.clone())));
    }
    let late = units.finish().unwrap();
    for (row, e) in formats::resolve_duplicates(Kind::Inventory, text.as_bytes(), &opts, &late).unwrap() {
        assert_eq!(row.line, e.line);
        let d = late.iter().find(|d| d.line == e.line).unwrap();
        accepted -= usize::from(d.otherwise_valid);
        errs.push((e.line, e.column, e.code.as_str(), e.message));
    }
    errs.sort_by_key(|e| e.0);
    (errs, accepted)
}

#[test]
fn late_duplicate_check_matches_the_inline_one_whatever_spills() {
    let text = repeated_skus();
    let p = parse(Kind::Inventory, &text);
    let mut inline: Vec<_> = p
        .units
        .iter()
        .flat_map(|u| u.result.as_ref().err().into_iter().flatten())
        .map(|e| (e.line, e.column.clone(), e.code.as_str(), e.message.clone()))
        .collect();
    inline.sort_by_key(|e| e.0);
    let accepted = p.units.iter().filter(|u| u.result.is_ok()).count();
    let repeats = inline.iter().filter(|e| e.2 == "duplicate_sku").count();
    assert!(repeats > 150, "{repeats}");
    assert!(inline.iter().any(|e| e.2 == "bad_integer"));
    for in_memory in [1, 2, 7, 100, 1000, formats::LATE_DUPLICATES_IN_MEMORY] {
        assert_eq!(checked_late(&text, in_memory), (inline.clone(), accepted), "in_memory = {in_memory}");
    }
}

#[test]
fn checked_units_report_what_units_report() {
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    for (kind, name) in [
        (Kind::Inventory, "inventory_broken.csv"),
        (Kind::Orders, "orders_broken.csv"),
        (Kind::Shipments, "shipments_broken.csv"),
        (Kind::Orders, "orders_good.csv"),
    ] {
        let bytes = std::fs::read(samples.join(name)).unwrap();
        assert_checked_matches(kind, &bytes, name);
    }
    // Orders the quick check for a clean order must not accept: differing order cells, a bad
    // value on a later row; and one it may leave to the full check: an all-cancel order whose
    // other cells differ (accepted there).
    let h = "order_ref,order_date,ship_name,ship_address1,ship_city,ship_country,sku,quantity,action\n";
    let body = format!(
        "{h}A,2024-01-02,Ann,1 Main St,Springfield,US,S1,1,create\n\
         A,2024-01-02,Ann,1 Main St,Springfield,US,S2,2,create\n\
         B,2024-01-02,Bob,2 Main St,Springfield,US,S1,1,create\n\
         B,2024-01-03,Bob,2 Main St,Springfield,US,S2,1,create\n\
         C,2024-01-02,Cy,3 Main St,Springfield,US,S1,1,create\n\
         C,2024-01-02,Cy,3 Main St,Springfield,XX,S2,1,create\n\
         D,2024-01-02,Di,4 Main St,Springfield,US,S1,1,cancel\n\
         D,2024-02-02,Dee,,,,S2,,cancel\n"
    );
    assert_checked_matches(Kind::Orders, body.as_bytes(), "inline orders");
    let accepted: Vec<bool> = parse(Kind::Orders, &body).units.iter().map(|u| u.result.is_ok()).collect();
    assert_eq!(accepted, [true, false, false, true]);
}

/// `next_checked` (what `validate` uses, with its quick path for clean orders) reports exactly
/// the rows and errors that the owned iterator reports.
fn assert_checked_matches(kind: Kind, bytes: &[u8], name: &str) {
    {
        let opts = ParseOptions::default();
        let owned: Vec<_> = formats::parse(kind, bytes, &opts)
            .unwrap()
            .map(|u| {
                let u = u.unwrap();
                (u.rows.clone(), u.result.err().unwrap_or_default())
            })
            .collect();
        let mut it = formats::parse(kind, bytes, &opts).unwrap();
        let mut lent = Vec::new();
        while let Some(u) = it.next_checked() {
            let u = u.unwrap();
            lent.push((u.rows().cloned().collect::<Vec<_>>(), u.errors().to_vec()));
        }
        assert_eq!(owned, lent, "{name}");
    }
}

/// Many batches' worth of rows (the framing thread hands rows over in batches), with errors,
/// multi-line values and a mid-stream rejection, parse the same on both paths (`parse_with`).
#[test]
fn piped_framing_matches_across_batches() {
    let mut body = String::from("sku,quantity,name\n");
    for i in 0..9000 {
        match i % 997 {
            0 => body.push_str(&format!("S{i},-1,x\n")),
            1 => body.push_str(&format!("S{i},2,\"two\nlines\"\n")),
            2 => body.push('\n'),
            _ => body.push_str(&format!("S{i},{i},name {i}\n")),
        }
    }
    let p = parse(Kind::Inventory, &body);
    assert_eq!(p.units.len(), 9000 - 10);
    let negative = errors(&p).iter().filter(|e| e.2 == "negative_quantity").count();
    assert_eq!(negative, 10);
    // The last row's line counts every physical line, the embedded newlines included.
    assert_eq!(p.units.last().unwrap().rows[0].line, 9000 + 1 + 10);

    let opts = ParseOptions { max_rows: 5000, ..ParseOptions::default() };
    let rej = reject(Kind::Inventory, body.as_bytes(), &opts);
    assert_eq!(rej.code, ErrorCode::TooManyRows);
}
