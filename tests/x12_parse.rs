//! X12 inbound: each set mapped to the expected records, separators read from the ISA, envelope
//! faults located with their codes, and the published samples.

use std::io::Read;
use std::path::Path;

use chrono::DateTime;
use rust_decimal::Decimal;
use stitch_bridge::formats::{
    Address, ErrorCode, FileRejection, InventoryRecord, OrderAction, OrderItem, OrderRecord, Record, RecordError,
    ShipmentItem, ShipmentRecord, ShippingSpeed,
};
use stitch_bridge::x12::envelope::check_parties;
use stitch_bridge::x12::inbound::{read, read_piped, Event, ReceivedAck, X12Options, X12Units};
use stitch_bridge::x12::{Party, SetKind, Version};

type Located = (u64, String, String);

/// What a consumer ends up with: records it may apply (units of accepted sets in accepted
/// groups), every located error, and the verdicts.
#[derive(Debug, Default)]
struct Outcome {
    applied: Vec<(SetKind, Record)>,
    errors: Vec<Located>,
    /// (ST01, ST02, AK502)
    sets: Vec<(String, String, Option<String>)>,
    /// (GS06, AK901, AK905)
    groups: Vec<(String, &'static str, Option<String>)>,
    acks: Vec<ReceivedAck>,
    /// Units seen, accepted or not.
    units: usize,
}

/// Every item a read yields, each `GroupEnd` with the `group_errors` it left.
type Trace = Vec<(Result<Event, FileRejection>, Vec<RecordError>)>;

fn trace<R: Read>(units: Result<X12Units<R>, FileRejection>) -> Result<Trace, FileRejection> {
    let mut units = units?;
    let mut out = Vec::new();
    while let Some(item) = units.next() {
        let errs = if matches!(item, Ok(Event::GroupEnd(_))) { units.group_errors().to_vec() } else { Vec::new() };
        out.push((item, errs));
    }
    assert!(units.next().is_none(), "iteration stays finished");
    Ok(out)
}

/// Reads on this thread and again with framing on its own thread (`read_piped`, what
/// `validate` uses), whole and in reads of a few bytes; every test here thereby checks that all
/// give the same.
fn traced(bytes: &[u8], opts: &X12Options) -> Result<Trace, FileRejection> {
    let here = trace(read(bytes, opts));
    let piped = trace(read_piped(std::io::Cursor::new(bytes.to_vec()), opts));
    assert_eq!(here, piped, "piped reading differs");
    // However the reads are cut (only the byte limit is judged as reads arrive).
    if opts.max_file_bytes >= bytes.len() as u64 {
        let trickled = trace(read_piped(Chunks(bytes.to_vec(), 0, 7), opts));
        assert_eq!(here, trickled, "piped reading in small reads differs");
    }
    here
}

/// Reads of at most `.2` bytes.
struct Chunks(Vec<u8>, usize, usize);

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self.0.get(self.1..).unwrap_or_default();
        let n = rest.len().min(buf.len()).min(self.2);
        buf[..n].copy_from_slice(&rest[..n]);
        self.1 += n;
        Ok(n)
    }
}

fn run_with(bytes: &[u8], opts: &X12Options) -> Result<Outcome, FileRejection> {
    let mut out = Outcome::default();
    let (mut in_set, mut in_group) = (Vec::new(), Vec::new());
    for (event, group_errors) in traced(bytes, opts)? {
        match event? {
            Event::Unit { set, unit } => {
                out.units += 1;
                assert!(!unit.rows.is_empty());
                match unit.result {
                    Ok(r) => in_set.push((set, r)),
                    Err(es) => out.errors.extend(es.iter().map(|e| (e.line, e.column.clone(), e.code.to_string()))),
                }
            }
            Event::SetEnd { result, errors, first_line, last_line, .. } => {
                assert!(first_line <= last_line);
                out.errors.extend(errors.iter().map(|e| (e.line, e.column.clone(), e.code.to_string())));
                assert_eq!(errors.is_empty(), result.set_code.is_none(), "a refused set says why");
                if result.set_code.is_none() {
                    in_group.append(&mut in_set);
                }
                in_set.clear();
                out.sets.push((result.id, result.control, result.set_code));
            }
            Event::GroupEnd(g) => {
                let errs = group_errors;
                assert_eq!(errs.is_empty(), g.group_code.is_none());
                out.errors.extend(errs.iter().map(|e| (e.line, e.column.clone(), e.code.to_string())));
                if g.group_code.is_none() {
                    out.applied.append(&mut in_group);
                }
                in_group.clear();
                out.groups.push((g.control.clone(), g.status(), g.group_code));
            }
            Event::Ack(a) => out.acks.push(a),
        }
    }
    Ok(out)
}

fn run(bytes: &[u8]) -> Result<Outcome, FileRejection> {
    run_with(bytes, &X12Options::default())
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/x12").join(name)).expect("sample exists")
}

fn e(line: u64, column: &str, code: &str) -> Located {
    (line, column.into(), code.into())
}

fn inv(line: u64, sku: &str, quantity: i64, barcode: Option<&str>) -> InventoryRecord {
    InventoryRecord { line, sku: sku.into(), quantity, name: None, barcode: barcode.map(String::from) }
}

fn inventory(o: &Outcome) -> Vec<InventoryRecord> {
    o.applied.iter().filter_map(|(_, r)| if let Record::Inventory(i) = r { Some(i.clone()) } else { None }).collect()
}

fn isa(control: &str, version: &str, rep: char, el: char, comp: char, term: &str) -> String {
    let v = if version == "00501" { rep } else { 'U' };
    let s = format!(
        "ISA{el}00{el}          {el}00{el}          {el}ZZ{el}WAREHOUSE      {el}ZZ{el}STITCHBRIDGE   {el}240315{el}1200{el}{v}{el}{version}{el}{control}{el}0{el}P{el}{comp}{term}"
    );
    assert_eq!(s.len(), 105 + term.len());
    s
}

/// An 846 interchange in `*`/`~`/`>` built from body segments (SE01 computed).
fn x846(body: &[&str]) -> String {
    let mut s = isa("000000001", "00401", 'U', '*', '>', "~");
    s.push_str("GS*IB*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~ST*846*0001~");
    for b in body {
        s.push_str(b);
        s.push('~');
    }
    s.push_str(&format!("SE*{}*0001~GE*1*1~IEA*1*000000001~", body.len() + 2));
    s
}

#[test]
fn good_846_is_one_record_per_lin_loop() {
    let o = run(&sample("846_good.x12")).unwrap();
    assert_eq!(o.errors, vec![]);
    let mut red = inv(5, "WIDGET-RED", 120, Some("012345670008"));
    red.name = Some("Widget, red".into());
    let mut blue = inv(8, "WIDGET-BLUE", 85, None);
    blue.name = Some("Widget, blue".into());
    // QTY*02 (not on hand) is not the quantity.
    assert_eq!(inventory(&o), vec![red, blue, inv(11, "GADGET-1", 25, Some("012345670039"))]);
    assert!(o.applied.iter().all(|(k, _)| *k == SetKind::Inventory846));
    assert_eq!(o.groups, vec![("1".into(), "A", None)]);
}

#[test]
fn broken_846_locates_errors_and_refuses_the_miscounted_set() {
    let o = run(&sample("846_broken.x12")).unwrap();
    assert_eq!(
        o.errors,
        vec![
            e(6, "QTY-02", "bad_integer"),
            e(7, "LIN-03", "missing_value"), // only a UPC: not a SKU
            e(10, "QTY-02", "negative_quantity"),
            e(11, "LIN-05", "bad_barcode"),
            e(13, "LIN-03", "duplicate_sku"),
            e(15, "QTY-02", "missing_value"),
            e(24, "SE-01", "x12_count"),
        ]
    );
    assert_eq!(inventory(&o), vec![inv(16, "GIZMO-L", 9, None)]);
    assert_eq!(o.sets[1], ("846".into(), "0002".into(), Some("4".into())));
    assert_eq!(o.sets[0].2, None, "the other set of the group is accepted");
    assert_eq!(o.groups, vec![("1".into(), "P", None)]);
}

#[test]
fn good_947_sign_follows_the_reason() {
    let o = run(&sample("947_good.x12")).unwrap();
    assert_eq!(o.errors, vec![]);
    assert_eq!(
        inventory(&o),
        vec![
            inv(7, "WIDGET-RED", -2, None),                  // AU damaged in facility
            inv(10, "WIDGET-BLUE", 5, Some("012345670015")), // 55 taken off hold
            inv(12, "GADGET-1", -3, None),                   // AA physical count: as sent
            inv(14, "GIZMO-S", 4, None),
        ]
    );
    assert!(o.applied.iter().all(|(k, _)| k.is_delta()));
}

#[test]
fn broken_947() {
    let o = run(&sample("947_broken.x12")).unwrap();
    assert_eq!(
        o.errors,
        vec![
            e(6, "W19-01", "bad_choice"),
            e(8, "W19-02", "negative_quantity"),
            e(10, "W19-02", "bad_integer"),
            e(12, "W19-06", "missing_value"),
        ]
    );
    assert_eq!(inventory(&o), vec![inv(14, "GIZMO-S", -1, None)]);
}

#[test]
fn good_and_broken_944() {
    let o = run(&sample("944_good.x12")).unwrap();
    assert_eq!(o.errors, vec![]);
    assert_eq!(inventory(&o), vec![inv(7, "WIDGET-RED", 24, Some("012345670008")), inv(9, "WIDGET-BLUE", 10, None)]);
    assert!(o.applied.iter().all(|(k, _)| *k == SetKind::Receipt944));
    let o = run(&sample("944_broken.x12")).unwrap();
    assert_eq!(
        o.errors,
        vec![e(6, "W07-01", "negative_quantity"), e(8, "W07-03", "bad_barcode"), e(10, "W07-05", "missing_value")]
    );
    assert_eq!(inventory(&o), vec![inv(12, "GIZMO-S", 2, None)]);
}

#[test]
fn good_945_is_one_shipment_per_set() {
    let o = run(&sample("945_good.x12")).unwrap();
    assert_eq!(o.errors, vec![]);
    let shipped = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
    let expected = vec![
        ShipmentRecord {
            line: 4,
            fulfillment_id: None,
            order_ref: Some("PO-1001".into()),
            tracking_number: "1Z999AA10123456784".into(),
            carrier: "UPS".into(),
            service: Some("Ground".into()),
            shipped_at: shipped("2024-03-16T10:15:00Z"),
            cost: None,
            weight: Some(Decimal::new(12, 1)),
            items: vec![
                ShipmentItem { line: 10, sku: "WIDGET-RED".into(), quantity: 2 },
                ShipmentItem { line: 12, sku: "GADGET-1".into(), quantity: 1 },
            ],
        },
        ShipmentRecord {
            line: 16,
            fulfillment_id: None,
            order_ref: Some("PO-1002".into()),
            tracking_number: "7023210039414604".into(),
            carrier: "CPCL".into(),
            service: None,
            shipped_at: shipped("2024-03-17T00:00:00Z"),
            cost: None,
            weight: None,
            // The line shipped 0 (W12-03) is not an item.
            items: vec![ShipmentItem { line: 20, sku: "WIDGET-BLUE".into(), quantity: 3 }],
        },
    ];
    let got: Vec<_> = o.applied.into_iter().map(|(_, r)| r).collect();
    assert_eq!(got, expected.into_iter().map(Record::Shipment).collect::<Vec<_>>());
}

#[test]
fn broken_945() {
    let o = run(&sample("945_broken.x12")).unwrap();
    assert_eq!(
        o.errors,
        vec![
            e(8, "W12-03", "bad_integer"),
            e(10, "W12-08", "missing_value"),
            e(13, "W06-03", "bad_date"),
            e(13, "MAN-02", "missing_value"),
            e(24, "SE-01", "x12_count"),
        ]
    );
    let refs: Vec<_> = o
        .applied
        .iter()
        .filter_map(|(_, r)| if let Record::Shipment(s) = r { s.order_ref.clone() } else { None })
        .collect();
    assert_eq!(refs, ["PO-1004"]);
    assert_eq!(o.groups, vec![("8".into(), "P", None)]);
}

#[test]
fn good_850_is_one_order_per_set() {
    let o = run(&sample("850_good.x12")).unwrap();
    assert_eq!(o.errors, vec![]);
    let first = OrderRecord {
        line: 4,
        order_ref: "PO-1001".into(),
        action: OrderAction::Create,
        order_date: Some(DateTime::parse_from_rfc3339("2024-03-15T00:00:00Z").unwrap()),
        ship_to: Some(Address {
            name: "Alice Example".into(),
            company: None,
            address1: "1 Main St".into(),
            address2: Some("Apt 2".into()),
            city: "Springfield".into(),
            state: Some("IL".into()),
            zip: Some("62701".into()),
            country: "US".into(),
            phone: Some("555-0100".into()),
            email: Some("alice@example.com".into()),
        }),
        shipping_speed: ShippingSpeed::Standard,
        currency: Some("USD".into()),
        items: vec![
            OrderItem { line: 13, sku: "WIDGET-RED".into(), quantity: 2, price: Some(Decimal::new(999, 2)) },
            OrderItem { line: 14, sku: "GADGET-1".into(), quantity: 1, price: Some(Decimal::new(2450, 2)) },
        ],
    };
    assert_eq!(o.applied.len(), 2);
    assert_eq!(o.applied[0], (SetKind::Order850, Record::Order(first)));
    let Record::Order(second) = &o.applied[1].1 else { panic!("an order") };
    assert_eq!((second.order_ref.as_str(), second.currency.as_deref()), ("PO-1002", Some("CAD")));
    assert_eq!(second.ship_to.as_ref().map(|a| (a.city.as_str(), a.country.as_str())), Some(("Toronto", "CA")));
}

#[test]
fn broken_850_and_an_unknown_set() {
    let o = run(&sample("850_broken.x12")).unwrap();
    assert_eq!(
        o.errors,
        vec![
            e(4, "BEG-05", "bad_date"),
            e(7, "N4-04", "bad_country"),
            e(8, "PO1-02", "zero_quantity"),
            e(9, "PO1-04", "negative_amount"),
            e(12, "N1-01", "missing_value"),
            e(21, "SE-02", "x12_control_number"),
            e(22, "ST-01", "x12_unknown_set"),
        ]
    );
    assert!(o.applied.is_empty());
    let codes: Vec<_> = o.sets.iter().map(|s| s.2.as_deref()).collect();
    assert_eq!(codes, [None, None, Some("3"), Some("1")]);
}

#[test]
fn received_997() {
    let o = run(&sample("997_good.x12")).unwrap();
    assert_eq!(o.errors, vec![]);
    assert_eq!(o.units, 0, "a 997 is not records");
    assert_eq!(
        o.acks,
        vec![ReceivedAck {
            line: 3,
            group_functional_id: "OW".into(),
            group_control: "42".into(),
            group_status: "P".into(),
            sets: vec![("940".into(), "0001".into(), "A".into()), ("940".into(), "0002".into(), "R".into())],
        }]
    );
    // A GE02 that is not GS06: the group (and its 997) must not be applied.
    let o = run(&sample("997_broken.x12")).unwrap();
    assert_eq!(o.errors, vec![e(9, "GE-02", "x12_control_number")]);
    assert_eq!(o.groups, vec![("12".into(), "R", Some("4".into()))]);
}

#[test]
fn other_separators_with_and_without_line_breaks() {
    let canonical = run(&sample("846_good.x12")).unwrap();
    let text = String::from_utf8(sample("846_good.x12")).unwrap();
    // `|` elements, `:` components, `^` repetitions (005010), no line breaks.
    let pipes = text.replace('*', "|").replace('>', ":").replace("|U|00401|", "|^|00501|").replace("~\n", "~");
    assert!(!pipes.contains('\n'));
    let mut units = read(pipes.as_bytes(), &X12Options::default()).unwrap();
    let sep = units.interchange().separators;
    assert_eq!((sep.element, sep.component, sep.segment, sep.repetition), (b'|', b':', b'~', Some(b'^')));
    assert_eq!(units.interchange().version, Version::V005010);
    assert!(units.all(|e| e.is_ok()));
    let o = run(pipes.as_bytes()).unwrap();
    assert_eq!(inventory(&o), inventory(&canonical));
    // A newline as the segment terminator, with CRLF line ends.
    let newline = text.replace("~\n", "\r\n").replacen(">\r\n", ">\n", 1);
    let o = run(newline.as_bytes()).unwrap();
    assert_eq!((inventory(&o), o.errors), (inventory(&canonical), vec![]));
}

#[test]
fn repetition_separator_inside_a_value_is_kept() {
    let mut s = isa("000000001", "00501", '^', '*', ':', "~");
    s.push_str("GS*IB*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*005010~ST*846*0001*005010~");
    s.push_str("REF*ZZ*A^B~LIN**SK*RED~QTY*33*4~SE*5*0001~GE*1*1~IEA*1*000000001~");
    let o = run(s.as_bytes()).unwrap();
    assert_eq!((inventory(&o), o.errors), (vec![inv(5, "RED", 4, None)], vec![]));
}

#[test]
fn control_numbers_and_counts() {
    let good = x846(&["LIN**SK*RED", "QTY*33*4"]);
    assert_eq!(inventory(&run(good.as_bytes()).unwrap()).len(), 1);
    // SE02 differs from ST02: that set is refused.
    let o = run(good.replace("SE*4*0001", "SE*4*0002").as_bytes()).unwrap();
    assert_eq!((o.errors, o.applied.len()), (vec![e(6, "SE-02", "x12_control_number")], 0));
    // GE01 does not count the sets.
    let o = run(good.replace("GE*1*1", "GE*2*1").as_bytes()).unwrap();
    assert_eq!((o.errors, o.applied.len()), (vec![e(7, "GE-01", "x12_count")], 0));
    assert_eq!(o.groups[0].2.as_deref(), Some("5"));
    // IEA02 / ISA13 and IEA01: the whole file.
    let r = run(good.replace("IEA*1*000000001", "IEA*1*000000002").as_bytes()).unwrap_err();
    assert_eq!((r.code, r.line, r.column.as_deref()), (ErrorCode::X12ControlNumber, Some(8), Some("IEA-02")));
    let r = run(good.replace("IEA*1*", "IEA*3*").as_bytes()).unwrap_err();
    assert_eq!((r.code, r.column.as_deref()), (ErrorCode::X12Count, Some("IEA-01")));
    // No IEA at all: incomplete.
    let cut = good.replace("IEA*1*000000001~", "");
    assert_eq!(run(cut.as_bytes()).unwrap_err().code, ErrorCode::X12Envelope);
    // A missing SE: the set is refused where the next header comes.
    let o = run(good.replace("SE*4*0001~", "").as_bytes()).unwrap();
    assert_eq!(o.errors, vec![e(6, "SE", "x12_envelope")]);
    assert_eq!(o.sets[0].2.as_deref(), Some("2"));
}

#[test]
fn a_miscounted_set_leaves_the_others_of_its_group() {
    let mut s = isa("000000001", "00401", 'U', '*', '>', "~\n");
    s.push_str("GS*IB*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~\n");
    s.push_str("ST*846*0001~\nLIN**SK*RED~\nQTY*33*4~\nSE*9*0001~\n");
    s.push_str("ST*846*0002~\nLIN**SK*BLUE~\nQTY*33*5~\nSE*4*0002~\n");
    s.push_str("GE*2*1~\nIEA*1*000000001~\n");
    let o = run(s.as_bytes()).unwrap();
    assert_eq!(o.errors, vec![e(6, "SE-01", "x12_count")]);
    assert_eq!(inventory(&o), vec![inv(8, "BLUE", 5, None)]);
    assert_eq!(o.groups, vec![("1".into(), "P", None)]);
}

#[test]
fn unknown_sets_and_wrong_groups() {
    let mut s = isa("000000001", "00401", 'U', '*', '>', "~");
    s.push_str("GS*OW*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~ST*940*0001~W05*N*PO-1~SE*3*0001~");
    s.push_str("ST*123*0002~SE*2*0002~GE*2*1~");
    // An 846 in a group whose GS01 is for 945s.
    s.push_str(
        "GS*SW*WAREHOUSE*STITCHBRIDGE*20240315*1200*2*X*004010~ST*846*0001~LIN**SK*RED~QTY*33*1~SE*4*0001~GE*1*2~",
    );
    s.push_str("IEA*2*000000001~");
    let o = run(s.as_bytes()).unwrap();
    assert_eq!(
        o.errors,
        vec![e(3, "ST-01", "x12_unknown_set"), e(6, "ST-01", "x12_unknown_set"), e(10, "ST-01", "x12_unknown_set")]
    );
    assert_eq!(o.units, 0);
    let codes: Vec<_> = o.sets.iter().map(|s| s.2.as_deref()).collect();
    assert_eq!(codes, [Some("1"), Some("1"), Some("6")]);
    assert_eq!(o.groups.iter().map(|g| g.1).collect::<Vec<_>>(), ["R", "R"]);
}

#[test]
fn partner_check() {
    let bytes = sample("846_good.x12");
    let units = read(bytes.as_slice(), &X12Options::default()).unwrap();
    let party = |q: &str, id: &str| Party { qualifier: q.into(), id: id.into(), application_id: String::new() };
    let i = units.interchange();
    assert_eq!((i.control.as_str(), i.usage), ("000000001", 'P'));
    assert!(check_parties(i, &party("ZZ", "WAREHOUSE"), &party("ZZ", "STITCHBRIDGE")).is_ok());
    let r = check_parties(i, &party("ZZ", "OTHER"), &party("ZZ", "STITCHBRIDGE")).unwrap_err();
    assert_eq!((r.code, r.column.as_deref()), (ErrorCode::X12Partner, Some("ISA-06")));
    assert!(r.message.contains("ZZ:WAREHOUSE") && r.message.contains("ZZ:OTHER"), "{}", r.message);
    let r = check_parties(i, &party("ZZ", "WAREHOUSE"), &party("01", "STITCHBRIDGE")).unwrap_err();
    assert_eq!((r.code, r.column.as_deref()), (ErrorCode::X12Partner, Some("ISA-08")));
    assert_eq!(ErrorCode::X12Partner.as_str(), "x12_partner");
}

#[test]
fn isa_faults_reject_the_file() {
    let good = x846(&["LIN**SK*RED", "QTY*33*4"]);
    let truncated = &good.as_bytes()[..80];
    assert_eq!(run(truncated).unwrap_err().code, ErrorCode::X12Envelope);
    // A padded field cut short: the ISA is no longer 106 characters.
    let short = good.replacen("WAREHOUSE      ", "WAREHOUSE", 1);
    let r = run(short.as_bytes()).unwrap_err();
    assert_eq!((r.code, r.line), (ErrorCode::X12Envelope, Some(1)));
    let r = run(good.replace("*00401*", "*00305*").as_bytes()).unwrap_err();
    assert_eq!((r.code, r.column.as_deref()), (ErrorCode::X12Envelope, Some("ISA-12")));
    // A BOM and blank lines before the ISA are fine.
    assert_eq!(inventory(&run(format!("\u{feff}\r\n\r\n{good}").as_bytes()).unwrap()).len(), 1);
    // Content after the IEA, or a segment outside a set.
    assert_eq!(run(format!("{good}LIN**SK*X~").as_bytes()).unwrap_err().code, ErrorCode::X12Envelope);
    let stray = good.replace("ST*846*0001~", "LIN**SK*BLUE~ST*846*0001~");
    assert_eq!(run(stray.as_bytes()).unwrap_err().code, ErrorCode::X12Envelope);
}

#[test]
fn limits_reject_or_refuse() {
    let good = x846(&["LIN**SK*RED", "QTY*33*4", "LIN**SK*BLUE", "QTY*33*5"]);
    let opts = |f: &dyn Fn(&mut X12Options)| {
        let mut o = X12Options::default();
        f(&mut o);
        o
    };
    let r = run_with(good.as_bytes(), &opts(&|o| o.max_rows = 5)).unwrap_err();
    assert_eq!(r.code, ErrorCode::TooManyRows);
    let r = run_with(good.as_bytes(), &opts(&|o| o.max_file_bytes = 120)).unwrap_err();
    assert_eq!(r.code, ErrorCode::FileTooLarge);
    let o = run_with(good.as_bytes(), &opts(&|o| o.max_field_len = 3)).unwrap();
    assert_eq!(o.errors, vec![e(6, "LIN-03", "field_too_long"), e(6, "LIN-03", "missing_value")]);
    let o = run_with(good.as_bytes(), &opts(&|o| o.max_rows_per_group = 1)).unwrap();
    assert_eq!(o.errors, vec![e(4, "LIN", "group_too_large"), e(6, "LIN", "group_too_large")]);
}

#[test]
fn located_errors_use_ordinals_and_element_references() {
    let mut s = isa("000000001", "00401", 'U', '*', '>', "~\n");
    s.push_str("GS*SW*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~\nST*945*0001~\n");
    s.push_str("W06*N*PO-1001*20240316~\nW27*M*UPS~\nMAN*GM*1Z1~\nLX*1~\nW12*CC*1*-1*0*EA**VN*RED~\nSE*7*0001~\n");
    s.push_str("GE*1*1~\nIEA*1*000000001~\n");
    let o = run(s.as_bytes()).unwrap();
    assert_eq!(o.errors, vec![e(8, "W12-03", "negative_quantity")]);
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    for c in ["x12_envelope", "x12_count", "x12_control_number", "x12_unknown_set", "x12_partner"] {
        assert!(codes.contains(&c), "{c}");
    }
}

#[test]
fn unit_rows_are_the_segments() {
    let good = x846(&["BIA*00*SI*1*20240315", "LIN**SK*RED", "PID*F****Red", "QTY*33*4", "CTT*1"]);
    let events: Vec<Event> = read(good.as_bytes(), &X12Options::default()).unwrap().collect::<Result<_, _>>().unwrap();
    let Event::Unit { unit, .. } = &events[0] else { panic!("a unit first: {events:?}") };
    let rows: Vec<(u64, Vec<&str>)> = unit.rows.iter().map(|r| (r.line, r.fields.iter().collect())).collect();
    assert_eq!(
        rows,
        vec![(5, vec!["LIN", "", "SK", "RED"]), (6, vec!["PID", "F", "", "", "", "Red"]), (7, vec!["QTY", "33", "4"])]
    );
    let Event::SetEnd { first_line, last_line, kind, .. } = &events[1] else { panic!("then the set's end") };
    assert_eq!((*first_line, *last_line, *kind), (3, 9, Some(SetKind::Inventory846)));
}

/// A file of many read buffers, with faults near and across buffer edges: framing on its own
/// thread (batch after batch) gives the same events as framing in line, plain and as
/// `validate` reads (`check_only`: accepted units counted, repeats found at the end).
#[test]
fn a_large_interchange_reads_the_same_piped() {
    let (mut body, mut bad, mut repeats, mut named) = (Vec::<Vec<u8>>::new(), 0, 0, 0);
    let loops = 30_000u32;
    for i in 0..loops {
        let repeated = i % 4_999 == 17;
        let sku = if repeated { "SKU-REPEATED".to_string() } else { format!("SKU-{i:08}") };
        body.push(format!("LIN**SK*{sku}").into_bytes());
        let qty_bad = i % 1_013 == 5;
        body.push(if qty_bad { "QTY*33*many".into() } else { format!("QTY*33*{}", i % 500).into_bytes() });
        if i % 2_039 == 9 {
            // Not UTF-8: the name is kept with U+FFFD.
            body.push(b"PID*F****Caf\xe9 ".to_vec());
            named += usize::from(!qty_bad && !repeated);
        }
        bad += usize::from(qty_bad);
        repeats += usize::from(repeated && i > 17);
    }
    let mut x = isa("000000001", "00401", 'U', '*', '>', "~\r\n").into_bytes();
    x.extend_from_slice(b"GS*IB*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~\r\nST*846*0001~\r\n");
    for b in &body {
        x.extend_from_slice(b);
        x.extend_from_slice(b"~\r\n");
    }
    x.extend_from_slice(format!("SE*{}*0001~\r\n", body.len() + 2).as_bytes());
    // A second set whose count is wrong: refused whole.
    x.extend_from_slice(b"ST*846*0002~LIN**SK*LATE~QTY*33*1~SE*9*0002~GE*2*1~IEA*1*000000001~\r\n");
    assert!(x.len() > 8 * 64 * 1024, "spans many read buffers: {}", x.len());

    let o = run(&x).unwrap();
    let codes = |c: &str| o.errors.iter().filter(|e| e.2 == c).count();
    assert_eq!((codes("bad_integer"), codes("duplicate_sku"), codes("x12_count")), (bad, repeats, 1));
    assert!(bad > 10 && repeats > 3 && named > 5);
    let cafe = inventory(&o).into_iter().filter(|r| r.name.as_deref() == Some("Caf\u{fffd}")).count();
    assert_eq!(cafe, named);
    assert_eq!(inventory(&o).len(), loops as usize - bad - repeats);

    // As `validate` reads it.
    let here = lean_trace(read(x.as_slice(), &X12Options::default()).unwrap());
    let piped = lean_trace(read_piped(std::io::Cursor::new(x.clone()), &X12Options::default()).unwrap());
    assert_eq!(here, piped, "check_only reads differ");
    let counted: u64 = here.1.iter().sum();
    assert_eq!(counted, (loops as usize - bad) as u64, "repeats stream by as accepted, found at the end");
    assert_eq!(here.2.len(), repeats);
}

/// A `check_only` read: the items, the units counted after each, the candidate repeats.
fn lean_trace<R: Read>(
    units: X12Units<R>,
) -> (Vec<Result<Event, FileRejection>>, Vec<u64>, Vec<stitch_bridge::formats::LateDuplicate>) {
    let mut units = units.check_only(1000);
    let (mut items, mut counted) = (Vec::new(), Vec::new());
    while let Some(item) = units.next() {
        items.push(item);
        counted.push(units.take_accepted());
    }
    (items, counted, units.finish().unwrap())
}
