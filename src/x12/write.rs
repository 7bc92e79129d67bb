//! Rendering the interchanges we send: 940 warehouse shipping orders (and their cancellations)
//! and 997 functional acknowledgments. Plain values in, bytes out: the engine picks the
//! fulfillments, the ledger allocates the control numbers and the time, the drop writes the bytes.
//!
//! Every value passes through [`clean`], so no separator can reach the file from Stitch's data or
//! a partner's; identifiers are never cut (a cut order ref or SKU names another order or product),
//! free text is cut to its X12 maximum. The element-by-element mapping is docs/x12-outbound.md.

use super::{GroupResult, Party, Separators, SetKind, SetResult, SyntaxError, Version};
use crate::reconcile::download::{order_date, safe_name};
use crate::stitch::wire::{Fulfillment, FulfillmentLineItem, ShipTo};
use chrono::{DateTime, FixedOffset};

/// One interchange's envelope: who, which version, and the control numbers the ledger allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Us: ISA05/06, GS02.
    pub sender: Party,
    /// The partner: ISA07/08, GS03.
    pub receiver: Party,
    /// GS08, ISA12, and ISA11 (`U` in 00401, the repetition separator in 00501).
    pub version: Version,
    /// ISA15: `P` production or `T` test.
    pub usage: char,
    /// ISA13 = IEA02, 1..=999_999_999 (written as 9 digits).
    pub interchange_control: u32,
    /// GS06 = GE02.
    pub group_control: u32,
    /// ST02 = SE02 (at least 4 digits).
    pub set_control: u32,
    /// ISA09/10 (YYMMDD, HHMM) and GS04/05 (CCYYMMDD, HHMM), in this offset.
    pub at: DateTime<FixedOffset>,
}

/// W05-01: a new order.
const ORIGINAL: &str = "N";
/// W05-01: cancel the order W05-02 names.
const CANCEL: &str = "F";

/// X12 maximum lengths of the free-text elements we write (identical in 004010 and 005010).
const NAME_MAX: usize = 60; // N1-02, N2-01 (element 93)
const ADDRESS_MAX: usize = 55; // N3-01/02 (element 166)
const CITY_MAX: usize = 30; // N4-01 (element 19)
const DESCRIPTION_MAX: usize = 45; // G69-01 (element 369)
const BAD_VALUE_MAX: usize = 99; // AK4-04 (element 725)
const ROUTING_MAX: usize = 35; // W66-05 (element 387)

/// A 940 asking the warehouse to ship `items` of `f` to its ship-to address.
///
/// ```
/// use stitch_bridge::stitch::wire::{Fulfillment, FulfillmentLineItem, FulfillmentState, ShipTo, ShippingSpeed};
/// use stitch_bridge::x12::write::{order_940, Envelope};
/// use stitch_bridge::x12::{Party, Version};
///
/// let party = |id: &str| Party { qualifier: "ZZ".into(), id: id.into(), application_id: id.into() };
/// let env = Envelope {
///     sender: party("BRIDGE"),
///     receiver: party("WAREHOUSE"),
///     version: Version::V004010,
///     usage: 'T',
///     interchange_control: 7,
///     group_control: 7,
///     set_control: 1,
///     at: "2026-03-04T05:06:07-08:00".parse()?,
/// };
/// let f = Fulfillment {
///     id: "F9".into(),
///     order_number: "PO*7".into(),
///     order_id: "1".into(),
///     status: String::new(),
///     shipping_speed: ShippingSpeed::Standard,
///     created_at: "2026-03-04T05:06:07Z".parse()?,
///     order_date: Some("2026-03-01T09:30:00-08:00".into()),
///     ship_to: ShipTo { name: Some("Ann".into()), ..Default::default() },
///     state: FulfillmentState::Open,
///     cancelled_at: None,
/// };
/// let item = FulfillmentLineItem { id: "L1".into(), sku: "RED".into(), name: None, quantity: 2, quantity_shipped: 0 };
/// let text = String::from_utf8(order_940(&env, &f, &[item]))?;
/// assert!(text.contains("~\nW05*N*PO 7*F9~\n"));
/// assert!(text.contains("~\nW01*2*EA**SK*RED~\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn order_940(env: &Envelope, f: &Fulfillment, items: &[FulfillmentLineItem]) -> Vec<u8> {
    let mut w = Interchange::open(env, SetKind::Order940);
    w.seg("W05", &[ORIGINAL, &order_ref(f), &f.id]);
    ship_to(&mut w, &f.ship_to);
    w.seg("G62", &["04", &order_date(f, Some("%Y%m%d"))]);
    w.seg("W66", &["PP", "ZZ", "", "", &cut(f.shipping_speed.as_str(), ROUTING_MAX)]);
    let mut total: u64 = 0;
    for (n, li) in items.iter().enumerate() {
        total += u64::from(li.quantity);
        w.seg("LX", &[&(n + 1).to_string()]);
        // W01-03 (U.P.C. case code) stays empty: Stitch's fulfillment line items carry no barcode.
        w.seg("W01", &[&li.quantity.to_string(), "EA", "", "SK", &li.sku]);
        if let Some(name) = li.name.as_deref().map(|n| cut(n, DESCRIPTION_MAX)).filter(|n| !n.is_empty()) {
            w.seg("G69", &[&name]);
        }
        w.seg("N9", &["LI", &li.id]);
    }
    w.seg("W76", &[&total.to_string()]);
    w.close()
}

/// A 940 cancelling the order `f` was sent as: W05-01 `F`, the same order ref and fulfillment
/// id, no ship-to and no lines (the warehouse already has them).
pub fn cancel_940(env: &Envelope, f: &Fulfillment) -> Vec<u8> {
    let mut w = Interchange::open(env, SetKind::Order940);
    w.seg("W05", &[CANCEL, &order_ref(f), &f.id]);
    w.close()
}

/// The 997 answering one received functional group. `env.version` should be the group's own
/// (`GroupResult::version`), so the partner reads the answer in the version it sent.
pub fn ack_997(env: &Envelope, group: &GroupResult) -> Vec<u8> {
    let mut w = Interchange::open(env, SetKind::Ack997);
    w.seg("AK1", &[&group.functional_id, &group.control]);
    for set in &group.sets {
        w.seg("AK2", &[&set.id, &set.control]);
        for e in &set.errors {
            syntax_error(&mut w, e);
        }
        w.seg("AK5", &ak5(set));
    }
    let received = group.sets.len().to_string();
    let accepted = group.sets.iter().filter(|s| s.accepted()).count().to_string();
    w.seg("AK9", &[group.status(), &received, &received, &accepted, group.group_code.as_deref().unwrap_or_default()]);
    w.close()
}

/// `order_<ref>_<fulfillment>.edi`, the CSV name's twin (same safe characters).
pub fn order_file_name(f: &Fulfillment) -> String {
    format!("order_{}_{}.edi", safe_name(&f.order_number), safe_name(&f.id))
}

/// `cancel_<ref>_<fulfillment>.edi`.
pub fn cancel_file_name(f: &Fulfillment) -> String {
    format!("cancel_{}_{}.edi", safe_name(&f.order_number), safe_name(&f.id))
}

/// The order ref as W05-02 carries it (and the warehouse echoes in the 945's W06-02): cleaned,
/// never cut; `_` when nothing is left, as in file names, so the mandatory element is present.
fn order_ref(f: &Fulfillment) -> String {
    let r = clean(&f.order_number);
    if r.is_empty() {
        "_".into()
    } else {
        r
    }
}

/// N1*ST with N2 (company beside a person's name), N3 and N4, and PER for phone and e-mail.
fn ship_to(w: &mut Interchange, t: &ShipTo) {
    let v = |x: &Option<String>| x.as_deref().map(clean).unwrap_or_default();
    let (name, company) = (cut(&v(&t.name), NAME_MAX), cut(&v(&t.company), NAME_MAX));
    let (n1, n2) = if name.is_empty() { (company, String::new()) } else { (name, company) };
    w.seg("N1", &["ST", &n1]);
    if !n2.is_empty() {
        w.seg("N2", &[&n2]);
    }
    let lines: Vec<String> =
        [&t.address1, &t.address2].iter().map(|a| cut(&v(a), ADDRESS_MAX)).filter(|a| !a.is_empty()).collect();
    if !lines.is_empty() {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        w.seg("N3", &refs);
    }
    let n4 = [cut(&v(&t.city), CITY_MAX), v(&t.state), v(&t.zip), v(&t.country)];
    if n4.iter().any(|x| !x.is_empty()) {
        w.seg("N4", &[&n4[0], &n4[1], &n4[2], &n4[3]]);
    }
    let (phone, email) = (v(&t.phone), v(&t.email));
    if !phone.is_empty() || !email.is_empty() {
        let mut per = vec!["IC", ""];
        if !phone.is_empty() {
            per.extend(["TE", phone.as_str()]);
        }
        if !email.is_empty() {
            per.extend(["EM", email.as_str()]);
        }
        w.seg("PER", &per);
    }
}

/// AK3 for the segment, then AK4 when an element is at fault.
fn syntax_error(w: &mut Interchange, e: &SyntaxError) {
    w.seg("AK3", &[&e.segment_id, &e.position_in_set.to_string(), "", &e.segment_code]);
    if let Some(el) = &e.element {
        let bad = el.value.as_deref().map(|b| cut(b, BAD_VALUE_MAX)).unwrap_or_default();
        w.seg("AK4", &[&el.position.to_string(), "", &el.code, &bad]);
    }
}

/// AK5-01 A or R; AK5-02 the set's own code, else 5 (segments in error) when only segments are.
fn ak5(set: &SetResult) -> [&str; 2] {
    match (&set.set_code, set.accepted()) {
        (_, true) => ["A", ""],
        (Some(code), false) => ["R", code.as_str()],
        (None, false) => ["R", "5"],
    }
}

/// One interchange with one group and one set, written as it goes; `close` writes the trailers
/// with the counts.
struct Interchange<'a> {
    env: &'a Envelope,
    out: Vec<u8>,
    /// Segments of the set so far, ST included.
    in_set: u32,
}

impl<'a> Interchange<'a> {
    fn open(env: &'a Envelope, kind: SetKind) -> Interchange<'a> {
        let mut w = Interchange { env, out: Vec::with_capacity(1024), in_set: 0 };
        w.out.extend_from_slice(isa(env).as_bytes());
        w.out.push(b'\n');
        let (date, time) = (env.at.format("%Y%m%d").to_string(), env.at.format("%H%M").to_string());
        let group = control(env.group_control, 1).to_string();
        let (snd, rcv) = (&env.sender.application_id, &env.receiver.application_id);
        w.raw_seg("GS", &[kind.functional_id(), snd, rcv, &date, &time, &group, "X", env.version.gs08()]);
        w.seg("ST", &[kind.st01(), &set_control(env)]);
        w
    }

    /// A segment inside the set: counted for SE01.
    fn seg(&mut self, id: &str, elements: &[&str]) {
        self.in_set += 1;
        self.raw_seg(id, elements);
    }

    /// Every value is cleaned; trailing empty elements are dropped, as X12 requires.
    fn raw_seg(&mut self, id: &str, elements: &[&str]) {
        let seps = Separators::ours(self.env.version);
        let cleaned: Vec<String> = elements.iter().map(|e| clean(e)).collect();
        let used = cleaned.iter().rposition(|e| !e.is_empty()).map_or(0, |i| i + 1);
        self.out.extend_from_slice(id.as_bytes());
        for e in &cleaned[..used] {
            self.out.push(seps.element);
            self.out.extend_from_slice(e.as_bytes());
        }
        self.out.push(seps.segment);
        self.out.push(b'\n');
    }

    fn close(mut self) -> Vec<u8> {
        let env = self.env;
        let count = (self.in_set + 1).to_string();
        self.seg("SE", &[&count, &set_control(env)]);
        self.raw_seg("GE", &["1", &control(env.group_control, 1).to_string()]);
        self.raw_seg("IEA", &["1", &format!("{:09}", control(env.interchange_control, 1))]);
        self.out
    }
}

/// A control number within X12's nine digits (wrapping, as control numbers do), never zero.
fn control(n: u32, floor: u32) -> u32 {
    (n % 1_000_000_000).max(floor)
}

/// ST02/SE02: at least four digits (ST02 is AN 4/9).
fn set_control(env: &Envelope) -> String {
    format!("{:04}", control(env.set_control, 1))
}

/// The fixed-width ISA (106 bytes with its terminator): ids padded to 15, ISA13 nine digits,
/// no TA1 asked (ISA14 0), `>` as the component separator.
fn isa(env: &Envelope) -> String {
    let seps = Separators::ours(env.version);
    let fixed = |s: &str, n: usize| format!("{:<n$.n$}", clean(s));
    let repetition = seps.repetition.map_or('U', char::from);
    let usage = if env.usage == 'P' { 'P' } else { 'T' };
    format!(
        "ISA*00*{blank}*00*{blank}*{}*{}*{}*{}*{}*{}*{repetition}*{}*{:09}*0*{usage}*{}{}",
        fixed(&env.sender.qualifier, 2),
        fixed(&env.sender.id, 15),
        fixed(&env.receiver.qualifier, 2),
        fixed(&env.receiver.id, 15),
        env.at.format("%y%m%d"),
        env.at.format("%H%M"),
        env.version.isa12(),
        control(env.interchange_control, 1),
        char::from(seps.component),
        char::from(seps.segment),
        blank = " ".repeat(10),
    )
}

/// A value as X12 may carry it: separators (`*` `>` `~` `^`, whatever the version) and control
/// characters become spaces, accented Latin letters lose their accents, any other non-ASCII
/// character becomes `?`; runs of spaces collapse and the ends are trimmed. Idempotent.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        let mapped = match c {
            '*' | '>' | '~' | '^' => ' ',
            c if c.is_control() || c.is_whitespace() => ' ',
            c if c.is_ascii() => c,
            c => fold(c),
        };
        if mapped == ' ' {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(mapped);
    }
    out
}

/// [`clean`], then at most `max` characters (all ASCII by then), trimmed again.
pub fn cut(s: &str, max: usize) -> String {
    let mut c = clean(s);
    c.truncate(max);
    c.truncate(c.trim_end().len());
    c
}

/// Latin-1 and Latin Extended-A letters to their base letter (ligatures to one letter: the value
/// is for a label, not a dictionary); everything else to `?`.
fn fold(c: char) -> char {
    match c {
        'À'..='Å' | 'Ā' | 'Ă' | 'Ą' => 'A',
        'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
        'Æ' => 'A',
        'æ' => 'a',
        'Ç' | 'Ć' | 'Č' => 'C',
        'ç' | 'ć' | 'č' => 'c',
        'Ð' | 'Ď' | 'Đ' => 'D',
        'ð' | 'ď' | 'đ' => 'd',
        'È'..='Ë' | 'Ē' | 'Ė' | 'Ę' | 'Ě' => 'E',
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'Ğ' => 'G',
        'ğ' => 'g',
        'Ì'..='Ï' | 'İ' | 'Ī' => 'I',
        'ì'..='ï' | 'ı' | 'ī' => 'i',
        'Ł' | 'Ľ' => 'L',
        'ł' | 'ľ' => 'l',
        'Ñ' | 'Ń' | 'Ň' => 'N',
        'ñ' | 'ń' | 'ň' => 'n',
        'Ò'..='Ö' | 'Ø' | 'Ő' | 'Œ' => 'O',
        'ò'..='ö' | 'ø' | 'ő' | 'œ' => 'o',
        'Ř' => 'R',
        'ř' => 'r',
        'Ś' | 'Š' | 'Ş' => 'S',
        'ś' | 'š' | 'ş' | 'ß' => 's',
        'Ť' => 'T',
        'ť' => 't',
        'Ù'..='Ü' | 'Ů' | 'Ű' | 'Ū' => 'U',
        'ù'..='ü' | 'ů' | 'ű' | 'ū' => 'u',
        'Ý' | 'Ÿ' => 'Y',
        'ý' | 'ÿ' => 'y',
        'Ź' | 'Ż' | 'Ž' => 'Z',
        'ź' | 'ż' | 'ž' => 'z',
        _ => '?',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(version: Version) -> Envelope {
        let party = |q: &str, id: &str| Party { qualifier: q.into(), id: id.into(), application_id: id.into() };
        Envelope {
            sender: party("ZZ", "BRIDGE"),
            receiver: party("01", "123456789"),
            version,
            usage: 'P',
            interchange_control: 42,
            group_control: 43,
            set_control: 44,
            at: "2026-03-04T05:06:07+01:00".parse().unwrap(),
        }
    }

    #[test]
    fn clean_removes_every_separator_and_control_and_folds_accents() {
        for (given, want) in [
            ("PO*7", "PO 7"),
            ("a~b>c^d", "a b c d"),
            ("  line\r\nbreak\t ", "line break"),
            ("***", ""),
            ("Müller Straße", "Muller Strase"),
            ("東京 7", "?? 7"),
            ("plain-Value_1/2", "plain-Value_1/2"),
        ] {
            assert_eq!(clean(given), want, "{given:?}");
            assert_eq!(clean(&clean(given)), clean(given), "idempotent on {given:?}");
        }
    }

    #[test]
    fn cut_limits_after_cleaning_and_trims_the_cut_end() {
        assert_eq!(cut("abc def", 4), "abc");
        assert_eq!(cut("é*é*é", 3), "e e");
        assert_eq!(cut("short", 60), "short");
        assert_eq!(cut(&"x".repeat(70), NAME_MAX).len(), NAME_MAX);
    }

    #[test]
    fn isa_is_fixed_width_with_padded_ids_and_nine_digit_control() {
        for version in [Version::V004010, Version::V005010] {
            let e = env(version);
            let isa = isa(&e);
            assert_eq!(isa.len(), 106, "{isa}");
            let fields: Vec<&str> = isa[..isa.len() - 1].split('*').collect();
            assert_eq!(fields.len(), 17);
            assert_eq!(fields[6], "BRIDGE         ");
            assert_eq!(fields[8], "123456789      ");
            assert_eq!((fields[9], fields[10]), ("260304", "0506"));
            assert_eq!(fields[11], if version == Version::V004010 { "U" } else { "^" });
            assert_eq!(fields[12], version.isa12());
            assert_eq!(fields[13], "000000042");
            assert_eq!((fields[14], fields[15], fields[16]), ("0", "P", ">"));
        }
        // An over-long or hostile id still leaves the ISA at its width.
        let mut e = env(Version::V004010);
        e.sender.id = "A*VERY~LONG>ID^THAT-OVERFLOWS".into();
        e.interchange_control = u32::MAX;
        let isa = isa(&e);
        assert_eq!(isa.len(), 106, "{isa}");
        assert_eq!(isa.matches('*').count(), 16);
    }

    #[test]
    fn control_numbers_stay_in_range_and_set_controls_have_four_digits() {
        assert_eq!(control(0, 1), 1);
        assert_eq!(control(999_999_999, 1), 999_999_999);
        assert_eq!(control(1_000_000_001, 1), 1);
        let mut e = env(Version::V004010);
        e.set_control = 7;
        assert_eq!(set_control(&e), "0007");
        e.set_control = 123_456;
        assert_eq!(set_control(&e), "123456");
    }

    #[test]
    fn trailing_empty_elements_are_dropped_inner_ones_kept() {
        let e = env(Version::V004010);
        let mut w = Interchange::open(&e, SetKind::Order940);
        let start = w.out.len();
        w.seg("W01", &["2", "EA", "", "SK", "RED", "", ""]);
        w.seg("W76", &["", ""]);
        assert_eq!(&w.out[start..], b"W01*2*EA**SK*RED~\nW76~\n");
    }

    #[test]
    fn file_names_are_the_csv_names_with_edi() {
        let f: Fulfillment = serde_json::from_value(serde_json::json!({
            "id": "F/9", "order_number": "=PO 7", "order_id": "1", "shipping_speed": "Standard",
            "created_at": "2026-03-04T05:06:07Z", "ship_to": {}, "state": "open"
        }))
        .unwrap();
        assert_eq!(order_file_name(&f), "order__PO_7_F_9.edi");
        assert_eq!(cancel_file_name(&f), "cancel__PO_7_F_9.edi");
    }
}
