//! The 940s and 997s we write, read back by an independent parser (`x12-types`, which reads the
//! separators from the ISA and assumes `*` and `~` after it, as we write) and by the structural
//! rules of the envelope: fixed-width ISA, SE01, matching control numbers, hostile values.

use proptest::prelude::*;
use stitch_bridge::stitch::wire::{Fulfillment, FulfillmentLineItem, FulfillmentState, ShipTo, ShippingSpeed};
use stitch_bridge::x12::write::{ack_997, cancel_940, clean, cut, order_940, Envelope};
use stitch_bridge::x12::{ElementError, GroupResult, Party, SetResult, SyntaxError, Version};
use x12_types::util::Parser;

fn env(version: Version) -> Envelope {
    Envelope {
        sender: Party { qualifier: "ZZ".into(), id: "BRIDGE".into(), application_id: "BRIDGEAPP".into() },
        receiver: Party { qualifier: "01".into(), id: "987654321".into(), application_id: "WHSE".into() },
        version,
        usage: 'T',
        interchange_control: 123,
        group_control: 456,
        set_control: 7,
        at: "2026-03-04T05:06:07-08:00".parse().unwrap(),
    }
}

fn fulfillment(order_number: &str) -> Fulfillment {
    Fulfillment {
        id: "F9001".into(),
        order_number: order_number.into(),
        order_id: "1".into(),
        status: String::new(),
        shipping_speed: ShippingSpeed::Expedited,
        created_at: "2026-03-04T05:06:07Z".parse().unwrap(),
        order_date: Some("2026-03-01T23:30:00-08:00".into()),
        ship_to: ShipTo {
            name: Some("Ann Smith".into()),
            company: Some("Acme".into()),
            address1: Some("1 Main St".into()),
            address2: Some("Suite 2".into()),
            city: Some("Portland".into()),
            state: Some("OR".into()),
            zip: Some("97201".into()),
            country: Some("US".into()),
            phone: Some("+1 503 555 0100".into()),
            email: Some("ann@example.com".into()),
        },
        state: FulfillmentState::Open,
        cancelled_at: None,
    }
}

fn items() -> Vec<FulfillmentLineItem> {
    vec![
        FulfillmentLineItem {
            id: "L1".into(),
            sku: "RED-S".into(),
            name: Some("Red shirt".into()),
            quantity: 2,
            quantity_shipped: 0,
        },
        FulfillmentLineItem { id: "L2".into(), sku: "BLUE-M".into(), name: None, quantity: 5, quantity_shipped: 0 },
    ]
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("we write ASCII")
}

fn o<T: std::fmt::Display>(x: &Option<T>) -> String {
    x.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// The segments as we wrote them: `~` then a line break after each, nothing after the last.
fn segments(t: &str) -> Vec<Vec<&str>> {
    let body = t.strip_suffix("~\n").expect("ends with a terminated segment");
    body.split("~\n").map(|s| s.split('*').collect()).collect()
}

/// The envelope rules every file we write must keep, checked on our own reading of the bytes.
fn assert_envelope(t: &str, version: Version, st01: &str, gs01: &str) {
    assert!(t.is_ascii());
    let b = t.as_bytes();
    assert_eq!(&b[..4], b"ISA*");
    assert_eq!((b[103], b[104], b[105], b[106]), (b'*', b'>', b'~', b'\n'), "ISA is 106 bytes: {t}");
    let segs = segments(t);
    for s in &segs {
        assert!(s[0].len() >= 2 && s[0].bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()), "{s:?}");
        assert!(s.iter().all(|e| !e.contains(['~', '\n', '\r'])), "{s:?}");
        if s[0] != "ISA" {
            assert!(s.iter().all(|e| !e.contains(['>', '^'])), "{s:?}");
            assert!(s.last().is_some_and(|e| !e.is_empty()) || s.len() == 1, "trailing empty element in {s:?}");
        }
    }
    let id = |i: usize| segs[i][0];
    let n = segs.len();
    assert_eq!((id(0), id(1), id(2), id(n - 3), id(n - 2), id(n - 1)), ("ISA", "GS", "ST", "SE", "GE", "IEA"));
    assert_eq!(segs.iter().filter(|s| s[0] == "ST" || s[0] == "GS" || s[0] == "ISA").count(), 3);
    let (isa, gs, st, se, ge, iea) = (&segs[0], &segs[1], &segs[2], &segs[n - 3], &segs[n - 2], &segs[n - 1]);
    assert_eq!(isa.len(), 17);
    assert_eq!(isa[11], if version == Version::V004010 { "U" } else { "^" });
    assert_eq!(isa[12], version.isa12());
    assert_eq!((isa[13], iea[2], iea[1]), ("000000123", "000000123", "1"));
    assert_eq!(isa[14], "0");
    assert_eq!((gs[1], gs[2], gs[3], gs[4], gs[5]), (gs01, "BRIDGEAPP", "WHSE", "20260304", "0506"));
    assert_eq!((gs[6], ge[2], ge[1]), ("456", "456", "1"));
    assert_eq!((gs[7], gs[8]), ("X", version.gs08()));
    assert_eq!((st[1], st[2], se[2]), (st01, "0007", "0007"));
    assert_eq!(se[1].parse::<usize>().unwrap(), n - 2 - 2, "SE01 counts ST..SE: {t}");
}

#[test]
fn order_940_in_4010_reads_back_with_its_values() {
    use validator::Validate;
    use x12_types::v004010::{Transmission, _940};
    let t = text(order_940(&env(Version::V004010), &fulfillment("PO-7"), &items()));
    assert_envelope(&t, Version::V004010, "940", "OW");
    let (rest, x) = Transmission::<_940>::parse(&t).unwrap_or_else(|e| panic!("{e:?}\n{t}"));
    assert!(rest.is_empty(), "unparsed: {rest:?}\n{t}");
    x.validate().unwrap_or_else(|e| panic!("{e}\n{t}"));
    assert_eq!(x.isa._06, "BRIDGE         ");
    assert_eq!(x.isa._08, "987654321      ");
    let g = &x.functional_group[0];
    assert_eq!(g.gs._01.to_string(), "OW");
    assert_eq!(g.segments.len(), 1);
    let set = &g.segments[0];
    assert_eq!((set._020._01.as_str(), set._020._02.as_str(), o(&set._020._03)), ("N", "PO-7", "F9001".into()));
    let st = &set._0100[0];
    assert_eq!((st._040._01.as_str(), o(&st._040._02)), ("ST", "Ann Smith".into()));
    assert_eq!(st._050[0]._01, "Acme");
    assert_eq!((st._060[0]._01.as_str(), o(&st._060[0]._02)), ("1 Main St", "Suite 2".into()));
    let n4 = st._070.as_ref().unwrap();
    assert_eq!(
        (o(&n4._01), o(&n4._02), o(&n4._03), o(&n4._04)),
        ("Portland".into(), "OR".into(), "97201".into(), "US".into())
    );
    let g62 = &set._110[0];
    assert_eq!((o(&g62._01), o(&g62._02)), ("04".into(), "20260301".into()), "the order's own date, in its offset");
    assert_eq!(o(&set._140.as_ref().unwrap()._05), "Expedited");
    let lines: Vec<(String, String, String, String, String)> = set
        ._0300_loop
        .iter()
        .map(|lx| {
            let w01 = &lx._0310_loop[0]._020;
            (lx._005._01.to_string(), w01._01.clone(), o(&w01._02), o(&w01._04), o(&w01._05))
        })
        .collect();
    let want = |n: &str, q: &str, sku: &str| {
        (n.to_string(), q.to_string(), "EA".to_string(), "SK".to_string(), sku.to_string())
    };
    assert_eq!(lines, vec![want("1", "2", "RED-S"), want("2", "5", "BLUE-M")]);
    let first = &set._0300_loop[0]._0310_loop[0];
    assert_eq!(first._030[0]._01, "Red shirt");
    assert!(set._0300_loop[1]._0310_loop[0]._030.is_empty(), "no G69 without a name");
    assert_eq!((first._040[0]._01.as_str(), first._040[0]._02.as_str()), ("LI", "L1"));
    assert_eq!(set._0400.as_ref().unwrap()._01, "7");
    assert_eq!((set._0500._01.to_string(), set._0500._02.as_str()), ("18".into(), "0007"));
    assert_eq!(x.iea._02.to_string(), "000000123");
}

#[test]
fn order_940_in_5010_reads_back_with_its_values() {
    use x12_types::v005010::{Transmission, _940};
    let t = text(order_940(&env(Version::V005010), &fulfillment("#1001"), &items()));
    assert_envelope(&t, Version::V005010, "940", "OW");
    let (rest, x) = Transmission::<_940>::parse(&t).unwrap_or_else(|e| panic!("{e:?}\n{t}"));
    assert!(rest.is_empty(), "unparsed: {rest:?}\n{t}");
    assert_eq!(x.isa._11.to_string(), "^");
    let g = &x.functional_group[0];
    assert_eq!((g.gs._01.as_str(), g.gs._08.as_str()), ("OW", "005010"));
    let set = &g.segments[0];
    assert_eq!((set._020._01.as_str(), set._020._02.as_str()), ("N", "#1001"));
    let skus: Vec<(String, String)> =
        set._0300_loop.iter().map(|lx| (lx._0310_loop[0]._020._01.clone(), o(&lx._0310_loop[0]._020._05))).collect();
    assert_eq!(skus, vec![("2".into(), "RED-S".into()), ("5".into(), "BLUE-M".into())]);
    assert_eq!(set._0400.as_ref().unwrap()._01, "7");
}

#[test]
fn cancel_940_names_the_same_order_and_carries_no_lines() {
    for version in [Version::V004010, Version::V005010] {
        let f = Fulfillment { state: FulfillmentState::Cancelled, ..fulfillment("PO-7") };
        let t = text(cancel_940(&env(version), &f));
        assert_envelope(&t, version, "940", "OW");
        let w05 = match version {
            Version::V004010 => {
                let (rest, x) = x12_types::v004010::Transmission::<x12_types::v004010::_940>::parse(&t).unwrap();
                assert!(rest.is_empty(), "{t}");
                let s = &x.functional_group[0].segments[0];
                assert!(s._0300_loop.is_empty() && s._0100.is_empty());
                (s._020._01.clone(), s._020._02.clone(), o(&s._020._03))
            }
            Version::V005010 => {
                let (rest, x) = x12_types::v005010::Transmission::<x12_types::v005010::_940>::parse(&t).unwrap();
                assert!(rest.is_empty(), "{t}");
                let s = &x.functional_group[0].segments[0];
                assert!(s._0300_loop.is_empty() && s._0100.is_empty());
                (s._020._01.clone(), s._020._02.clone(), o(&s._020._03))
            }
        };
        assert_eq!(w05, ("F".into(), "PO-7".into(), "F9001".into()));
    }
}

fn accepted_set(control: &str) -> SetResult {
    SetResult { id: "945".into(), control: control.into(), errors: vec![], set_code: None }
}

fn rejected_set() -> SetResult {
    SetResult {
        id: "945".into(),
        control: "0002".into(),
        errors: vec![
            SyntaxError {
                segment_id: "W12".into(),
                position_in_set: 6,
                segment_code: "8".into(),
                element: Some(ElementError { position: 3, code: "6".into(), value: Some("1*2~3".into()) }),
                line: 9,
                message: "W12-03 is not a number".into(),
            },
            SyntaxError {
                segment_id: "N9".into(),
                position_in_set: 4,
                segment_code: "2".into(),
                element: None,
                line: 7,
                message: "unexpected segment".into(),
            },
        ],
        set_code: None,
    }
}

fn group(sets: Vec<SetResult>, group_code: Option<&str>) -> GroupResult {
    GroupResult {
        functional_id: "SW".into(),
        control: "881".into(),
        version: "004010".into(),
        sets,
        group_code: group_code.map(String::from),
    }
}

/// (AK1, [(AK2-01, AK2-02, [(AK3 segment, position, code, [(AK4 position, code, bad value)])], AK5-01, AK5-02)], AK9)
type Ak3 = (String, String, String, Vec<(String, String, String)>);
type Ack = ((String, String), Vec<(String, String, Vec<Ak3>, String, String)>, [String; 5]);

fn read_997_4010(t: &str) -> Ack {
    use x12_types::v004010::{Transmission, _997};
    let (rest, x) = Transmission::<_997>::parse(t).unwrap_or_else(|e| panic!("{e:?}\n{t}"));
    assert!(rest.is_empty(), "unparsed: {rest:?}\n{t}");
    let a = &x.functional_group[0].segments[0];
    let sets = a
        .loop_ak2
        .iter()
        .map(|l| {
            let ak3 = l
                .loop_ak3
                .iter()
                .map(|e| {
                    let ak4 = e.ak4.iter().map(|k| (k._01.clone(), k._03.clone(), o(&k._04))).collect();
                    (e.ak3._01.clone(), e.ak3._02.to_string(), o(&e.ak3._04), ak4)
                })
                .collect();
            (l.ak2._01.to_string(), l.ak2._02.clone(), ak3, l.ak5._01.to_string(), o(&l.ak5._02))
        })
        .collect();
    let k = &a.ak9;
    (
        (a.ak1._01.to_string(), a.ak1._02.to_string()),
        sets,
        [k._01.to_string(), k._02.to_string(), k._03.to_string(), k._04.to_string(), o(&k._05)],
    )
}

fn read_997_5010(t: &str) -> Ack {
    use x12_types::v005010::{Transmission, _997};
    let (rest, x) = Transmission::<_997>::parse(t).unwrap_or_else(|e| panic!("{e:?}\n{t}"));
    assert!(rest.is_empty(), "unparsed: {rest:?}\n{t}");
    let a = &x.functional_group[0].segments[0];
    let sets = a
        .loop_ak2
        .iter()
        .map(|l| {
            let ak3 = l
                .loop_ak3
                .iter()
                .map(|e| {
                    let ak4 = e.ak4.iter().map(|k| (k._01.clone(), k._03.clone(), o(&k._04))).collect();
                    (e.ak3._01.clone(), e.ak3._02.to_string(), o(&e.ak3._04), ak4)
                })
                .collect();
            (o(&l.ak2._01), o(&l.ak2._02), ak3, l.ak5._01.to_string(), o(&l.ak5._02))
        })
        .collect();
    let k = &a.ak9;
    ((o(&a.ak1._01), o(&a.ak1._02)), sets, [o(&k._01), o(&k._02), o(&k._03), o(&k._04), o(&k._05)])
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn ack_997_of_an_accepted_group_reads_back_in_both_versions() {
    let g = group(vec![accepted_set("0001"), accepted_set("0002")], None);
    let want: Ack = (
        (s("SW"), s("881")),
        vec![(s("945"), s("0001"), vec![], s("A"), s("")), (s("945"), s("0002"), vec![], s("A"), s(""))],
        [s("A"), s("2"), s("2"), s("2"), s("")],
    );
    let t = text(ack_997(&env(Version::V004010), &g));
    assert_envelope(&t, Version::V004010, "997", "FA");
    assert_eq!(read_997_4010(&t), want);
    let t = text(ack_997(&env(Version::V005010), &g));
    assert_envelope(&t, Version::V005010, "997", "FA");
    assert_eq!(read_997_5010(&t), want);
}

#[test]
fn ack_997_of_a_group_with_a_rejected_set_carries_ak3_ak4_and_counts() {
    let g = group(vec![accepted_set("0001"), rejected_set()], None);
    let errors =
        vec![(s("W12"), s("6"), s("8"), vec![(s("3"), s("6"), s("1 2 3"))]), (s("N9"), s("4"), s("2"), vec![])];
    let want: Ack = (
        (s("SW"), s("881")),
        vec![(s("945"), s("0001"), vec![], s("A"), s("")), (s("945"), s("0002"), errors, s("R"), s("5"))],
        [s("P"), s("2"), s("2"), s("1"), s("")],
    );
    let t = text(ack_997(&env(Version::V004010), &g));
    assert_envelope(&t, Version::V004010, "997", "FA");
    assert!(t.contains("~\nAK3*W12*6**8~\nAK4*3**6*1 2 3~\n"), "{t}");
    assert_eq!(read_997_4010(&t), want);
    let t = text(ack_997(&env(Version::V005010), &g));
    assert_eq!(read_997_5010(&t), want);
}

#[test]
fn ack_997_carries_set_and_group_codes() {
    let mut bad_count = accepted_set("0003");
    bad_count.set_code = Some("4".into());
    let g = group(vec![bad_count], Some("5"));
    let t = text(ack_997(&env(Version::V004010), &g));
    let (_, sets, ak9) = read_997_4010(&t);
    assert_eq!((sets[0].3.as_str(), sets[0].4.as_str()), ("R", "4"));
    assert_eq!(ak9, [s("R"), s("1"), s("1"), s("0"), s("5")]);
}

/// Segment ids and element counts: the shape a hostile value must not change.
fn shape(t: &str) -> Vec<(String, usize)> {
    segments(t).iter().map(|s| (s[0].to_string(), s.len())).collect()
}

fn hostile(f: &mut Fulfillment, items: &mut [FulfillmentLineItem], v: &str) {
    f.order_number = format!("A{v}");
    let t = &mut f.ship_to;
    for field in [
        &mut t.name,
        &mut t.company,
        &mut t.address1,
        &mut t.address2,
        &mut t.city,
        &mut t.state,
        &mut t.zip,
        &mut t.country,
        &mut t.phone,
        &mut t.email,
    ] {
        *field = Some(format!("x{v}"));
    }
    for li in items.iter_mut() {
        li.sku = format!("S{v}");
        li.name = Some(format!("n{v}"));
        li.id = format!("L{v}");
    }
}

#[test]
fn hostile_values_cannot_break_segments() {
    let v = "*~>^\n\r\tIEA*1*000000001~\nÉ東\u{0}";
    for version in [Version::V004010, Version::V005010] {
        let (mut f, mut li) = (fulfillment("PO-7"), items());
        hostile(&mut f, &mut li, "");
        let benign = shape(&text(order_940(&env(version), &f, &li)));
        hostile(&mut f, &mut li, v);
        let t = text(order_940(&env(version), &f, &li));
        assert_envelope(&t, version, "940", "OW");
        assert_eq!(shape(&t), benign, "{t}");
        let w05 =
            segments(&t).into_iter().find(|s| s[0] == "W05").unwrap().iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert_eq!(w05[2], "A IEA 1 000000001 E?");
        let cancel = text(cancel_940(&env(version), &f));
        assert_eq!(shape(&cancel), shape(&text(cancel_940(&env(version), &fulfillment("PO-7")))));
    }
    let (mut f, mut li) = (fulfillment("PO-7"), items());
    hostile(&mut f, &mut li, v);
    let t = text(order_940(&env(Version::V004010), &f, &li));
    let (rest, x) = x12_types::v004010::Transmission::<x12_types::v004010::_940>::parse(&t).unwrap();
    assert!(rest.is_empty(), "{t}");
    let lx = &x.functional_group[0].segments[0]._0300_loop;
    assert_eq!(o(&lx[0]._0310_loop[0]._020._05), "S IEA 1 000000001 E?");
    // A hostile 997: the partner's own bytes come back in AK4-04, cleaned.
    let mut set = rejected_set();
    set.control = format!("9{v}");
    set.errors[0].segment_id = format!("W{v}");
    set.errors[0].element.as_mut().unwrap().value = Some(v.repeat(20));
    let g = group(vec![set], None);
    let benign = shape(&text(ack_997(&env(Version::V004010), &group(vec![rejected_set()], None))));
    let t = text(ack_997(&env(Version::V004010), &g));
    assert_envelope(&t, Version::V004010, "997", "FA");
    assert_eq!(shape(&t), benign, "{t}");
    let ak4 = segments(&t).into_iter().find(|s| s[0] == "AK4").unwrap()[4].to_string();
    assert_eq!(ak4, cut(&v.repeat(20), 99), "AK4-04 is cleaned and cut to its maximum");
    assert!((90..=99).contains(&ak4.len()), "{ak4}");
}

#[test]
fn free_text_is_cut_to_its_maximum_identifiers_never() {
    let mut f = fulfillment(&"R".repeat(30));
    f.ship_to.name = Some("N".repeat(80));
    f.ship_to.address1 = Some("A".repeat(80));
    f.ship_to.city = Some("C".repeat(40));
    let mut li = items();
    li[0].sku = "K".repeat(60);
    li[0].name = Some("D".repeat(60));
    let t = text(order_940(&env(Version::V004010), &f, &li));
    let segs = segments(&t);
    let find = |id: &str| segs.iter().find(|s| s[0] == id).unwrap();
    assert_eq!(find("W05")[2].len(), 30, "the order ref is what the 945 echoes: never cut");
    assert_eq!(find("W01")[5].len(), 60, "a cut SKU names another product");
    assert_eq!((find("N1")[2].len(), find("N3")[1].len(), find("N4")[1].len(), find("G69")[1].len()), (60, 55, 30, 45));
}

#[test]
fn an_order_without_address_parts_still_reads_back() {
    let mut f = fulfillment("PO-8");
    f.ship_to = ShipTo { company: Some("Acme".into()), ..Default::default() };
    let t = text(order_940(&env(Version::V004010), &f, &items()[..1]));
    assert_envelope(&t, Version::V004010, "940", "OW");
    let ids: Vec<String> = shape(&t).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["ISA", "GS", "ST", "W05", "N1", "G62", "W66", "LX", "W01", "G69", "N9", "W76", "SE", "GE", "IEA"]);
    let (rest, x) = x12_types::v004010::Transmission::<x12_types::v004010::_940>::parse(&t).unwrap();
    assert!(rest.is_empty(), "{t}");
    assert_eq!(o(&x.functional_group[0].segments[0]._0100[0]._040._02), "Acme", "the company stands in for a name");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_text_keeps_the_shape_and_reads_back(v in "\\PC{0,30}", junk in "[*~>^\n\r ]{0,5}") {
        let value = format!("{junk}{v}{junk}");
        for version in [Version::V004010, Version::V005010] {
            let (mut f, mut li) = (fulfillment("PO-7"), items());
            hostile(&mut f, &mut li, "");
            let benign = shape(&text(order_940(&env(version), &f, &li)));
            hostile(&mut f, &mut li, &value);
            let t = text(order_940(&env(version), &f, &li));
            prop_assert_eq!(shape(&t), benign.clone());
            let w05 = segments(&t).into_iter().find(|s| s[0] == "W05").unwrap()[2].to_string();
            prop_assert_eq!(w05, clean(&format!("A{value}")));
        }
        let (mut f, mut li) = (fulfillment("PO-7"), items());
        hostile(&mut f, &mut li, &value);
        let t = text(order_940(&env(Version::V004010), &f, &li));
        let parsed = x12_types::v004010::Transmission::<x12_types::v004010::_940>::parse(&t);
        prop_assert!(parsed.as_ref().is_ok_and(|(rest, _)| rest.is_empty()), "{:?}\n{}", parsed.err(), t);
    }
}

#[test]
fn the_independent_parser_refuses_what_breaks_the_structure() {
    use x12_types::v004010::{Transmission, _940, _997};
    let reads = |t: &str| Transmission::<_940>::parse(t).is_ok_and(|(rest, _)| rest.is_empty());
    let good = text(order_940(&env(Version::V004010), &fulfillment("PO-7"), &items()));
    assert!(reads(&good));
    // What an unescaped `~` or `*` in a value would do: a stray segment, or W05 split in two.
    assert!(!reads(&good.replace("~\nN1*ST*", "~\nXX*1~\nN1*ST*")), "a stray segment inside the set");
    assert!(!reads(&good.replacen("W05*N*PO-7*F9001~\n", "", 1)), "no W05");
    let ack = text(ack_997(&env(Version::V004010), &group(vec![rejected_set()], None)));
    let ack_reads = |t: &str| Transmission::<_997>::parse(t).is_ok_and(|(rest, _)| rest.is_empty());
    assert!(ack_reads(&ack));
    assert!(!ack_reads(&ack.replacen("AK5*R*5~\n", "", 1)), "a set without its AK5");
}
