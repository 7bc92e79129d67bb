//! Value parsers. Each returns a clerk-readable message on failure; the caller adds line and column.

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::str::FromStr;

use super::codes::{COUNTRIES, CURRENCIES};
use super::error::ErrorCode;

/// A failed value: code plus message.
pub(crate) type FieldError = (ErrorCode, String);

/// Shows a value in a message without letting a huge cell flood the report.
pub(crate) fn shown(v: &str) -> String {
    const MAX: usize = 40;
    if v.chars().count() <= MAX {
        v.to_string()
    } else {
        let mut s: String = v.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

/// Whole number (optional sign). Rejects "3.0" on purpose: quantities are counts, not measures.
pub(crate) fn integer(column: &str, v: &str) -> Result<i64, FieldError> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err((ErrorCode::BadInteger, format!("{column} must be a whole number, got '{}'", shown(v))));
    }
    i64::from_str(v).map_err(|_| (ErrorCode::BadInteger, format!("{column} is too large, got '{}'", shown(v))))
}

/// A count that must be positive (order and shipment lines).
pub(crate) fn positive_quantity(column: &str, v: &str) -> Result<u32, FieldError> {
    let n = integer(column, v)?;
    if n < 0 {
        return Err((ErrorCode::NegativeQuantity, format!("{column} must be at least 1, got {n}")));
    }
    if n == 0 {
        return Err((ErrorCode::ZeroQuantity, format!("{column} must be at least 1, got 0")));
    }
    u32::try_from(n).map_err(|_| (ErrorCode::BadInteger, format!("{column} is too large, got {n}")))
}

/// Plain decimal notation only ("12.50", "-3", ".5"): no thousands separators, currency signs or
/// exponents, so "1,000" in a comma-delimited file can never be silently misread.
pub(crate) fn decimal(column: &str, v: &str) -> Result<Decimal, FieldError> {
    let body = v.strip_prefix(['+', '-']).unwrap_or(v);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    let bad = || (ErrorCode::BadDecimal, format!("{column} must be a number like 12.50, got '{}'", shown(v)));
    if !ok {
        return Err(bad());
    }
    Decimal::from_str(v).map_err(|_| bad())
}

/// Decimal that must not be negative (price, cost, weight).
pub(crate) fn amount(column: &str, v: &str) -> Result<Decimal, FieldError> {
    let d = decimal(column, v)?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err((ErrorCode::NegativeAmount, format!("{column} must not be negative, got '{}'", shown(v))));
    }
    Ok(d)
}

/// The common shapes without an offset, read directly: `YYYY-MM-DD`, and `YYYY-MM-DD HH:MM[:SS]`
/// (space or `T`). Gives exactly what the chrono formats below would, or `None` to let them
/// decide (any other shape, an impossible date, a leap second).
fn common_date(b: &[u8]) -> Option<NaiveDateTime> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    if !matches!(b.len(), 10 | 16 | 19) || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    if b.len() == 10 {
        return Some(date.and_time(NaiveTime::MIN));
    }
    if !matches!(b[10], b' ' | b'T') || b[13] != b':' {
        return None;
    }
    let sec = if b.len() == 19 {
        if b[16] != b':' {
            return None;
        }
        num(17..19)?
    } else {
        0
    };
    if sec >= 60 {
        return None;
    }
    let time = NaiveTime::from_hms_opt(num(11..13)?, num(14..16)?, sec)?;
    Some(date.and_time(time))
}

/// Places a wall-clock time in `tz`. In a DST overlap the earlier instant is taken (the warehouse
/// clock showed that time first); a time inside a DST gap never happened and is rejected.
fn localize(column: &str, v: &str, naive: NaiveDateTime, tz: Tz) -> Result<DateTime<FixedOffset>, FieldError> {
    if tz == Tz::UTC {
        return Ok(naive.and_utc().fixed_offset());
    }
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Ok(dt.fixed_offset()),
        LocalResult::Ambiguous(a, _) => Ok(a.fixed_offset()),
        LocalResult::None => Err((
            ErrorCode::BadDate,
            format!("{column} '{}' does not exist in time zone {tz} (clocks skipped it)", shown(v)),
        )),
    }
}

/// Dates: the partner's own format first (if any), then RFC 3339, `YYYY-MM-DD`,
/// `YYYY-MM-DD HH:MM[:SS]` (also with `T`), `MM/DD/YYYY`. Times without an offset are in `tz`.
pub(crate) fn date(column: &str, v: &str, custom: Option<&str>, tz: Tz) -> Result<DateTime<FixedOffset>, FieldError> {
    if let Some(fmt) = custom {
        if let Ok(dt) = DateTime::parse_from_str(v, fmt) {
            return Ok(dt);
        }
        if let Ok(n) = NaiveDateTime::parse_from_str(v, fmt) {
            return localize(column, v, n, tz);
        }
        if let Ok(d) = NaiveDate::parse_from_str(v, fmt) {
            return localize(column, v, d.and_time(NaiveTime::MIN), tz);
        }
    }
    if custom.is_none() {
        if let Some(n) = common_date(v.as_bytes()) {
            return localize(column, v, n, tz);
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(v) {
        return Ok(dt);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(v, fmt) {
            return localize(column, v, n, tz);
        }
    }
    for fmt in ["%Y-%m-%d", "%m/%d/%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(v, fmt) {
            return localize(column, v, d.and_time(NaiveTime::MIN), tz);
        }
    }
    Err((
        ErrorCode::BadDate,
        format!("{column} must be a date like 2024-03-15, 2024-03-15 14:30 or 03/15/2024, got '{}'", shown(v)),
    ))
}

/// UPC-A (12), EAN-13 (13) or GTIN-14 (14) digits with a valid check digit.
pub(crate) fn barcode(column: &str, v: &str) -> Result<(), FieldError> {
    let bytes = v.as_bytes();
    if !matches!(bytes.len(), 12..=14) || !bytes.iter().all(u8::is_ascii_digit) {
        let message = match excel_damage(v) {
            Some(why) => format!("{column} {why}"),
            None => format!("{column} must be 12, 13 or 14 digits (UPC/EAN/GTIN), got '{}'", shown(v)),
        };
        return Err((ErrorCode::BadBarcode, message));
    }
    if let Err(expected) = check_digit(bytes) {
        return Err((
            ErrorCode::BadBarcode,
            format!("{column} '{v}' has a wrong check digit (expected {expected}); it was probably mistyped"),
        ));
    }
    Ok(())
}

/// GS1 check digit of ASCII digits; `Err` holds the digit expected.
fn check_digit(digits: &[u8]) -> Result<(), u32> {
    let Some((check, payload)) = digits.split_last() else {
        return Err(0);
    };
    let sum: u32 =
        payload.iter().rev().enumerate().map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 }).sum();
    let expected = (10 - sum % 10) % 10;
    if u32::from(check - b'0') == expected {
        Ok(())
    } else {
        Err(expected)
    }
}

/// What a spreadsheet does to a barcode column left as "General": a long number shown in
/// scientific notation (and saved so, its digits lost), or leading zeros dropped. Says so, since
/// the clerk can only fix it in the spreadsheet.
fn excel_damage(v: &str) -> Option<String> {
    const HINT: &str = "Excel turned this barcode into a number; format the column as Text before saving";
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((mantissa, exp)) = v.split_once(['E', 'e']) {
        let (int, frac) = mantissa.split_once(['.', ',']).unwrap_or((mantissa, "0"));
        let exp = exp.strip_prefix('+').unwrap_or(exp);
        if digits(int) && digits(frac) && digits(exp) {
            return Some(format!("'{}' is in scientific notation: {HINT}", shown(v)));
        }
    }
    if (6..12).contains(&v.len()) && digits(v) {
        let padded = format!("{v:0>12}");
        if check_digit(padded.as_bytes()).is_ok() {
            return Some(format!("'{v}' has lost its leading zero(s): it was probably {padded}. {HINT}"));
        }
        if v.len() == 11 {
            return Some(format!("'{v}' has 11 digits: a UPC that lost its leading zero? {HINT}"));
        }
    }
    None
}

/// `v` uppercased, if it is `N` ASCII letters long; no allocation.
fn upper<const N: usize>(v: &str) -> Option<[u8; N]> {
    let b: [u8; N] = v.as_bytes().try_into().ok()?;
    Some(b.map(|c| c.to_ascii_uppercase()))
}

/// Position (plus one) of each `N`-letter code of `list` in a table indexed by the code read as
/// a base-26 number, built at compile time: a lookup is one index, not a search.
const fn letter_index<const N: usize, const SIZE: usize>(list: &[&str]) -> [u16; SIZE] {
    let mut table = [0u16; SIZE];
    let mut i = 0;
    while i < list.len() {
        let b = list[i].as_bytes();
        assert!(b.len() == N, "codes of one list have one length");
        let mut k = 0usize;
        let mut j = 0;
        while j < N {
            assert!(b[j].is_ascii_uppercase(), "codes are uppercase letters");
            k = k * 26 + (b[j] - b'A') as usize;
            j += 1;
        }
        table[k] = (i + 1) as u16;
        i += 1;
    }
    table
}

static COUNTRY_INDEX: [u16; 26 * 26] = letter_index::<2, { 26 * 26 }>(&COUNTRIES);
static CURRENCY_INDEX: [u16; 26 * 26 * 26] = letter_index::<3, { 26 * 26 * 26 }>(&CURRENCIES);

/// Finds `v` (case-insensitively) among the `N`-letter codes of `list`, indexed by `table`.
fn lookup<const N: usize>(list: &[&'static str], table: &[u16], v: &str) -> Option<&'static str> {
    let up = upper::<N>(v)?;
    let mut k = 0usize;
    for c in up {
        if !c.is_ascii_uppercase() {
            return None;
        }
        k = k * 26 + usize::from(c - b'A');
    }
    let at = *table.get(k)?;
    list.get(usize::from(at).checked_sub(1)?).copied()
}

/// ISO 3166-1 alpha-2, case-insensitive; returns the uppercase code.
pub(crate) fn country(column: &str, v: &str) -> Result<&'static str, FieldError> {
    lookup::<2>(&COUNTRIES, &COUNTRY_INDEX, v).ok_or_else(|| {
        (
            ErrorCode::BadCountry,
            format!("{column} must be a two-letter ISO country code like US or GB, got '{}'", shown(v)),
        )
    })
}

/// ISO 4217, case-insensitive; returns the uppercase code.
pub(crate) fn currency(column: &str, v: &str) -> Result<&'static str, FieldError> {
    lookup::<3>(&CURRENCIES, &CURRENCY_INDEX, v).ok_or_else(|| {
        (
            ErrorCode::BadCurrency,
            format!("{column} must be a three-letter ISO currency code like USD, got '{}'", shown(v)),
        )
    })
}

/// Is `code` a known ISO 3166-1 alpha-2 country (uppercase)?
pub fn is_country(code: &str) -> bool {
    COUNTRIES.binary_search(&code).is_ok()
}

/// Is `code` a known ISO 4217 currency (uppercase)?
pub fn is_currency(code: &str) -> bool {
    CURRENCIES.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lists_are_sorted_and_real() {
        assert!(COUNTRIES.windows(2).all(|w| w[0] < w[1]));
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]));
        for c in ["US", "CA", "GB", "DE", "JP"] {
            assert!(is_country(c));
        }
        for c in ["UK", "XX", "EU"] {
            assert!(!is_country(c));
        }
        assert!(is_currency("USD") && is_currency("EUR") && !is_currency("ABC") && !is_currency("XXX"));
    }

    #[test]
    fn barcodes() {
        assert!(barcode("b", "036000291452").is_ok()); // UPC-A
        assert!(barcode("b", "4006381333931").is_ok()); // EAN-13
        assert!(barcode("b", "10012345678902").is_ok()); // GTIN-14
        assert_eq!(barcode("b", "036000291453").unwrap_err().0, ErrorCode::BadBarcode);
        assert_eq!(barcode("b", "12345").unwrap_err().0, ErrorCode::BadBarcode);
        assert_eq!(barcode("b", "03600029145x").unwrap_err().0, ErrorCode::BadBarcode);
        for (v, hint) in [
            ("1.23457E+11", true),
            ("4,00638E+12", true),
            ("36000291452", true),
            ("1234567895", true),
            ("12345", false),
            ("E+11", false),
            ("1.2E+", false),
        ] {
            let msg = barcode("b", v).unwrap_err().1;
            assert_eq!(msg.contains("Excel"), hint, "{v}: {msg}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(integer("q", "+7"), Ok(7));
        assert_eq!(integer("q", "-7"), Ok(-7));
        for bad in ["3.5", "", "-", "1e3", "٣", "99999999999999999999"] {
            assert_eq!(integer("q", bad).unwrap_err().0, ErrorCode::BadInteger, "{bad}");
        }
        assert_eq!(positive_quantity("q", "0").unwrap_err().0, ErrorCode::ZeroQuantity);
        assert_eq!(positive_quantity("q", "-1").unwrap_err().0, ErrorCode::NegativeQuantity);
        assert_eq!(decimal("p", "12.50").map(|d| d.to_string()), Ok("12.50".into()));
        assert_eq!(decimal("p", ".5").map(|d| d.to_string()), Ok("0.5".into()));
        for bad in ["1,000", "$5", "1e3", ".", "1.2.3", "nan"] {
            assert_eq!(decimal("p", bad).unwrap_err().0, ErrorCode::BadDecimal, "{bad}");
        }
        assert_eq!(amount("p", "-0.01").unwrap_err().0, ErrorCode::NegativeAmount);
        assert!(amount("p", "-0").is_ok());
    }

    #[test]
    fn common_shapes_read_like_the_formats() {
        let slow = |v: &str| {
            for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
                if let Ok(n) = NaiveDateTime::parse_from_str(v, fmt) {
                    return Some(n);
                }
            }
            NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().map(|d| d.and_time(NaiveTime::MIN))
        };
        for v in [
            "2024-03-15",
            "2024-02-29",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "0000-01-01",
            "2024-03-15 14:30",
            "2024-03-15T14:30",
            "2024-03-15 14:30:59",
            "2024-03-15T23:59:59",
            "2024-03-15 24:00",
            "2024-03-15 14:60",
            "2024-03-15 14:30:60",
            "2024-3-15",
            "2024-03-15x14:30",
            "2024-03-15 14-30",
            "2024/03/15",
            "+024-03-15",
            "2024-03-1a",
            "2024-03-15 14:30:5x",
            "2024-03-15 14:30 ",
        ] {
            if let Some(fast) = common_date(v.as_bytes()) {
                assert_eq!(Some(fast), slow(v), "{v}");
            }
        }
        assert!(common_date(b"2024-03-15").is_some() && common_date(b"2024-03-15 14:30:05").is_some());
    }

    #[test]
    fn dates_and_zones() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let d = |v: &str| date("d", v, None, ny).map(|d| d.to_rfc3339());
        assert_eq!(d("2024-03-15"), Ok("2024-03-15T00:00:00-04:00".into()));
        assert_eq!(d("2024-01-15 14:30"), Ok("2024-01-15T14:30:00-05:00".into()));
        assert_eq!(d("2024-01-15 14:30:05"), Ok("2024-01-15T14:30:05-05:00".into()));
        assert_eq!(d("01/15/2024"), Ok("2024-01-15T00:00:00-05:00".into()));
        assert_eq!(d("2024-01-15T10:00:00Z"), Ok("2024-01-15T10:00:00+00:00".into()));
        assert_eq!(d("2024-03-10 02:30").unwrap_err().0, ErrorCode::BadDate); // DST gap
        assert_eq!(d("2024-11-03 01:30"), Ok("2024-11-03T01:30:00-04:00".into())); // overlap: earlier
        assert_eq!(d("15/01/2024").unwrap_err().0, ErrorCode::BadDate);
        assert_eq!(d("2024-02-30").unwrap_err().0, ErrorCode::BadDate);
        let c = date("d", "15.01.2024", Some("%d.%m.%Y"), Tz::UTC).map(|d| d.to_rfc3339());
        assert_eq!(c, Ok("2024-01-15T00:00:00+00:00".into()));
    }
}
