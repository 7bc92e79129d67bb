//! Canonical columns per kind, the alias table, and header -> column-index mapping.
//!
//! The column tables are public so tests (and the published Table Schemas) can be checked against
//! the code: one source of truth for names, types and required flags.

use super::error::{ErrorCode, FileRejection, RecordError};
use super::{Kind, ParseOptions};

/// When a value must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Column must be in the header and every row needs a value.
    Required,
    /// Column must be in the header; only `create` order rows need a value (cancel rows may be blank).
    RequiredForCreate,
    /// Column may be absent; at least one column of the same `group` must be present and filled.
    OneOf(&'static str),
    Optional,
}

/// Value type, as published in the Table Schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    Integer,
    Decimal,
    Date,
}

/// One canonical column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: &'static str,
    pub presence: Presence,
    pub ty: ColType,
}

impl ColumnDef {
    /// Must the column appear in the header?
    pub fn header_required(&self) -> bool {
        matches!(self.presence, Presence::Required | Presence::RequiredForCreate)
    }
}

const fn col(name: &'static str, presence: Presence, ty: ColType) -> ColumnDef {
    ColumnDef { name, presence, ty }
}

use ColType::{Date, Decimal, Integer, Text};
use Presence::{OneOf, Optional, Required, RequiredForCreate};

pub(crate) mod inv {
    pub const SKU: usize = 0;
    pub const QUANTITY: usize = 1;
    pub const NAME: usize = 2;
    pub const BARCODE: usize = 3;
}

/// Inventory columns; indices match `inv::*`.
pub const INVENTORY_COLUMNS: &[ColumnDef] = &[
    col("sku", Required, Text),
    col("quantity", Required, Integer),
    col("name", Optional, Text),
    col("barcode", Optional, Text),
];

pub(crate) mod ord {
    pub const ORDER_REF: usize = 0;
    pub const ORDER_DATE: usize = 1;
    pub const SHIP_NAME: usize = 2;
    pub const SHIP_COMPANY: usize = 3;
    pub const SHIP_ADDRESS1: usize = 4;
    pub const SHIP_ADDRESS2: usize = 5;
    pub const SHIP_CITY: usize = 6;
    pub const SHIP_STATE: usize = 7;
    pub const SHIP_ZIP: usize = 8;
    pub const SHIP_COUNTRY: usize = 9;
    pub const SHIP_PHONE: usize = 10;
    pub const SHIP_EMAIL: usize = 11;
    pub const SHIPPING_SPEED: usize = 12;
    pub const SKU: usize = 13;
    pub const QUANTITY: usize = 14;
    pub const PRICE: usize = 15;
    pub const CURRENCY: usize = 16;
    pub const ACTION: usize = 17;
    /// Fields repeated on every row of an order, which must agree.
    pub const HEADER_FIELDS: [usize; 15] = [
        ORDER_DATE,
        SHIP_NAME,
        SHIP_COMPANY,
        SHIP_ADDRESS1,
        SHIP_ADDRESS2,
        SHIP_CITY,
        SHIP_STATE,
        SHIP_ZIP,
        SHIP_COUNTRY,
        SHIP_PHONE,
        SHIP_EMAIL,
        SHIPPING_SPEED,
        CURRENCY,
        ACTION,
        ORDER_REF,
    ];
}

/// Order columns; indices match `ord::*`. `quantity` is required although the issue did not say
/// so: an order line without a quantity cannot be shipped, and guessing 1 would be worse.
pub const ORDER_COLUMNS: &[ColumnDef] = &[
    col("order_ref", Required, Text),
    col("order_date", RequiredForCreate, Date),
    col("ship_name", RequiredForCreate, Text),
    col("ship_company", Optional, Text),
    col("ship_address1", RequiredForCreate, Text),
    col("ship_address2", Optional, Text),
    col("ship_city", RequiredForCreate, Text),
    col("ship_state", Optional, Text),
    col("ship_zip", Optional, Text),
    col("ship_country", RequiredForCreate, Text),
    col("ship_phone", Optional, Text),
    col("ship_email", Optional, Text),
    col("shipping_speed", Optional, Text),
    col("sku", RequiredForCreate, Text),
    col("quantity", RequiredForCreate, Integer),
    col("price", Optional, Decimal),
    col("currency", Optional, Text),
    col("action", Optional, Text),
];

pub(crate) mod shp {
    pub const FULFILLMENT_ID: usize = 0;
    pub const ORDER_REF: usize = 1;
    pub const SKU: usize = 2;
    pub const QUANTITY: usize = 3;
    pub const SHIPPED_AT: usize = 4;
    pub const CARRIER: usize = 5;
    pub const TRACKING_NUMBER: usize = 6;
    pub const SERVICE: usize = 7;
    pub const COST: usize = 8;
    pub const WEIGHT: usize = 9;
    /// Fields describing the shipment as a whole, which must agree on all its rows.
    pub const HEADER_FIELDS: [usize; 5] = [SHIPPED_AT, CARRIER, SERVICE, COST, WEIGHT];
}

/// Shipment columns; indices match `shp::*`. `quantity` is required (see `ORDER_COLUMNS`).
pub const SHIPMENT_COLUMNS: &[ColumnDef] = &[
    col("fulfillment_id", OneOf("shipment_ref"), Text),
    col("order_ref", OneOf("shipment_ref"), Text),
    col("sku", Required, Text),
    col("quantity", Required, Integer),
    col("shipped_at", Required, Date),
    col("carrier", Required, Text),
    col("tracking_number", Required, Text),
    col("service", Optional, Text),
    col("cost", Optional, Decimal),
    col("weight", Optional, Decimal),
];

/// The canonical columns of a kind, in published (schema) order.
pub fn columns(kind: Kind) -> &'static [ColumnDef] {
    match kind {
        Kind::Inventory => INVENTORY_COLUMNS,
        Kind::Orders => ORDER_COLUMNS,
        Kind::Shipments => SHIPMENT_COLUMNS,
    }
}

/// Built-in aliases (lowercase alias -> canonical), mostly CartRover's field names. The only place
/// aliases live; a partner's `column_map` is applied before this table.
pub const ALIASES: &[(&str, &str)] = &[
    ("item", "sku"),
    ("item_sku", "sku"),
    ("item_code", "sku"),
    ("qty", "quantity"),
    ("item_qty", "quantity"),
    ("qty_on_hand", "quantity"),
    ("on_hand", "quantity"),
    ("quantity_on_hand", "quantity"),
    ("qty_shipped", "quantity"),
    ("description", "name"),
    ("item_name", "name"),
    ("upc", "barcode"),
    ("ean", "barcode"),
    ("gtin", "barcode"),
    ("cust_ref", "order_ref"),
    ("order_number", "order_ref"),
    ("order_no", "order_ref"),
    ("po_num", "order_ref"),
    ("ship_to_name", "ship_name"),
    ("ship_first_name", "ship_name"),
    ("ship_to_company", "ship_company"),
    ("ship_address_1", "ship_address1"),
    ("ship_address_2", "ship_address2"),
    ("ship_to_address1", "ship_address1"),
    ("ship_to_address2", "ship_address2"),
    ("ship_to_city", "ship_city"),
    ("ship_to_state", "ship_state"),
    ("ship_postal_code", "ship_zip"),
    ("ship_to_zip", "ship_zip"),
    ("ship_to_country", "ship_country"),
    ("ship_to_phone", "ship_phone"),
    ("ship_to_email", "ship_email"),
    ("ship_method", "shipping_speed"),
    ("item_price", "price"),
    ("unit_price", "price"),
    ("currency_code", "currency"),
    ("currency_iso", "currency"),
    ("tracking_no", "tracking_number"),
    ("tracking", "tracking_number"),
    ("tracking_num", "tracking_number"),
    ("ship_date", "shipped_at"),
    ("date_shipped", "shipped_at"),
    ("ship_via", "carrier"),
    ("carrier_name", "carrier"),
    ("ship_service", "service"),
    ("shipping_cost", "cost"),
    ("ship_cost", "cost"),
    ("ship_weight", "weight"),
];

/// Normalises a header cell: strips a BOM and whitespace, lowercases.
pub fn normalize(name: &str) -> String {
    name.trim_start_matches('\u{feff}').trim().to_lowercase()
}

/// Canonical name for a header cell: partner map first, then built-in aliases, else the
/// normalised name itself.
pub fn canonical_name(name: &str, column_map: &std::collections::HashMap<String, String>) -> String {
    let n = normalize(name);
    if let Some(mapped) = column_map.get(&n) {
        return normalize(mapped);
    }
    match ALIASES.iter().find(|(alias, _)| *alias == n) {
        Some((_, canonical)) => (*canonical).to_string(),
        None => n,
    }
}

/// Where each canonical column sits in the file.
#[derive(Debug, Clone)]
pub(crate) struct HeaderMap {
    pub kind: Kind,
    /// Field index in the file for each entry of `columns(kind)`.
    pub index: Vec<Option<usize>>,
    /// Column name to report for each file field (canonical if known, original otherwise).
    pub field_names: Vec<String>,
}

impl HeaderMap {
    /// Maps a header; rejects the file for missing or duplicated columns, warns for unknown ones.
    pub fn build(
        kind: Kind,
        header: &[String],
        opts: &ParseOptions,
    ) -> Result<(HeaderMap, Vec<RecordError>), FileRejection> {
        let defs = columns(kind);
        let mut index = vec![None; defs.len()];
        let mut field_names = Vec::with_capacity(header.len());
        let mut warnings = Vec::new();
        for (i, original) in header.iter().enumerate() {
            let canonical = canonical_name(original, &opts.column_map);
            match defs.iter().position(|d| d.name == canonical) {
                Some(d) => {
                    if let Some(first) = index[d] {
                        let mut rej = FileRejection::new(
                            ErrorCode::DuplicateColumn,
                            Some(1),
                            format!(
                                "columns {} ('{}') and {} ('{}') both mean '{}'; keep only one",
                                first + 1,
                                header.get(first).map(String::as_str).unwrap_or(""),
                                i + 1,
                                original.trim(),
                                canonical
                            ),
                        );
                        rej.column = Some(canonical.clone());
                        return Err(rej);
                    }
                    index[d] = Some(i);
                    field_names.push(canonical);
                }
                None => {
                    let shown = original.trim_start_matches('\u{feff}').trim().to_string();
                    let message = if shown.is_empty() {
                        format!("column {} has no name and is ignored", i + 1)
                    } else {
                        format!("column '{shown}' is not used for {} files and is ignored", kind.as_str())
                    };
                    warnings.push(RecordError::new(1, &shown, ErrorCode::UnknownColumn, message));
                    field_names.push(shown);
                }
            }
        }
        // A file that says what each row does may be all cancels, which need only order_ref:
        // create rows without the create columns are then refused row by row.
        let may_cancel = kind == Kind::Orders && index[ord::ACTION].is_some();
        let mut missing: Vec<String> = defs
            .iter()
            .zip(&index)
            .filter(|(d, idx)| d.header_required() && idx.is_none())
            .filter(|(d, _)| !(may_cancel && d.presence == RequiredForCreate))
            .map(|(d, _)| d.name.to_string())
            .collect();
        // One-of groups: at least one member column must be present.
        for (i, d) in defs.iter().enumerate() {
            if let Presence::OneOf(group) = d.presence {
                let members: Vec<usize> =
                    (0..defs.len()).filter(|&j| defs[j].presence == Presence::OneOf(group)).collect();
                if members[0] == i && members.iter().all(|&j| index[j].is_none()) {
                    let names: Vec<&str> = members.iter().map(|&j| defs[j].name).collect();
                    missing.push(names.join(" or "));
                }
            }
        }
        if !missing.is_empty() {
            if let Some(seen) = other_delimiter(kind, header, opts) {
                return Err(wrong_delimiter(seen, opts.delimiter));
            }
            let mut rej = FileRejection::new(
                ErrorCode::MissingColumn,
                Some(1),
                format!(
                    "the header lacks required column{}: {}",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", ")
                ),
            );
            rej.column = Some(missing.join(","));
            return Err(rej);
        }
        Ok((HeaderMap { kind, index, field_names }, warnings))
    }

    /// Name to report for file field `i`.
    pub fn field_name(&self, i: usize) -> &str {
        self.field_names.get(i).map(String::as_str).unwrap_or("")
    }

    /// The column a ragged row of `values` values is reported under: the first value beyond the
    /// header (`extra_1`, the name it has in the error file) or the first one missing.
    pub fn ragged_column(&self, values: usize) -> String {
        if values > self.field_names.len() {
            extra_column(1)
        } else {
            self.field_name(values).to_string()
        }
    }
}

/// Header name, in error files, of the `n`th (1-based) value a ragged row has beyond the header.
pub fn extra_column(n: usize) -> String {
    format!("extra_{n}")
}

/// Delimiters partners use; tried when a header lacks columns.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The delimiter `header` (read with `opts.delimiter`) seems to be separated by instead: one that
/// occurs more often in it than the delimiter in use and, splitting its cells, finds more of the
/// required columns of `kind` than the header as read (the most, if several do).
fn other_delimiter(kind: Kind, header: &[String], opts: &ParseOptions) -> Option<u8> {
    let defs = columns(kind);
    let found =
        |names: &[String]| defs.iter().filter(|d| d.presence != Optional && names.iter().any(|n| n == d.name)).count();
    let as_read: Vec<String> = header.iter().map(|h| canonical_name(h, &opts.column_map)).collect();
    let baseline = found(&as_read);
    DELIMITERS
        .into_iter()
        .filter(|&c| {
            let seen: usize = header.iter().map(|h| h.bytes().filter(|&b| b == c).count()).sum();
            c != opts.delimiter && seen >= header.len()
        })
        .map(|c| {
            let split: Vec<String> = header
                .iter()
                .flat_map(|h| h.split(char::from(c)))
                .map(|h| canonical_name(h.trim_matches('"'), &opts.column_map))
                .collect();
            (found(&split), c)
        })
        .filter(|&(n, _)| n > baseline)
        .max_by_key(|&(n, _)| n)
        .map(|(_, c)| c)
}

/// How a delimiter is named in messages.
fn delimiter_name(c: u8) -> String {
    match c {
        b'\t' => "tabs".into(),
        c if c.is_ascii_graphic() || c == b' ' => format!("'{}'", char::from(c)),
        c => format!("byte 0x{c:02x}"),
    }
}

fn wrong_delimiter(seen: u8, used: u8) -> FileRejection {
    let (toml, flag) = match seen {
        b'\t' => ("\\t".to_string(), "'\\t'".to_string()),
        c => (char::from(c).to_string(), format!("'{}'", char::from(c))),
    };
    FileRejection::new(
        ErrorCode::WrongDelimiter,
        Some(1),
        format!(
            "the header is separated by {} but this account reads {}: set delimiter = \"{toml}\" \
             for this partner (validate: --delimiter {flag})",
            delimiter_name(seen),
            delimiter_name(used)
        ),
    )
}

/// Guesses the kind from a header, after aliasing. A kind matches when all its header-required
/// columns are present; the most specific match wins. Falls back to telltale columns.
pub fn sniff(header: &[String]) -> Option<Kind> {
    sniff_with(header, &std::collections::HashMap::new())
}

/// `sniff` after a partner's column renames.
pub fn sniff_with(header: &[String], column_map: &std::collections::HashMap<String, String>) -> Option<Kind> {
    let names: Vec<String> = header.iter().map(|h| canonical_name(h, column_map)).collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    let full = |kind: Kind| {
        let defs = columns(kind);
        defs.iter().filter(|d| d.header_required()).all(|d| has(d.name))
            && defs.iter().all(|d| match d.presence {
                Presence::OneOf(g) => defs.iter().any(|e| e.presence == Presence::OneOf(g) && has(e.name)),
                _ => true,
            })
    };
    for kind in [Kind::Orders, Kind::Shipments, Kind::Inventory] {
        if full(kind) {
            return Some(kind);
        }
    }
    if has("tracking_number") || has("shipped_at") || has("fulfillment_id") {
        Some(Kind::Shipments)
    } else if names.iter().any(|n| n.starts_with("ship_")) || has("order_date") || (has("order_ref") && has("action")) {
        Some(Kind::Orders)
    } else if has("sku") && (has("quantity") || has("barcode")) {
        Some(Kind::Inventory)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_constants_match_tables() {
        assert_eq!(INVENTORY_COLUMNS[inv::SKU].name, "sku");
        assert_eq!(INVENTORY_COLUMNS[inv::QUANTITY].name, "quantity");
        assert_eq!(INVENTORY_COLUMNS[inv::NAME].name, "name");
        assert_eq!(INVENTORY_COLUMNS[inv::BARCODE].name, "barcode");
        let o = [
            (ord::ORDER_REF, "order_ref"),
            (ord::ORDER_DATE, "order_date"),
            (ord::SHIP_NAME, "ship_name"),
            (ord::SHIP_COMPANY, "ship_company"),
            (ord::SHIP_ADDRESS1, "ship_address1"),
            (ord::SHIP_ADDRESS2, "ship_address2"),
            (ord::SHIP_CITY, "ship_city"),
            (ord::SHIP_STATE, "ship_state"),
            (ord::SHIP_ZIP, "ship_zip"),
            (ord::SHIP_COUNTRY, "ship_country"),
            (ord::SHIP_PHONE, "ship_phone"),
            (ord::SHIP_EMAIL, "ship_email"),
            (ord::SHIPPING_SPEED, "shipping_speed"),
            (ord::SKU, "sku"),
            (ord::QUANTITY, "quantity"),
            (ord::PRICE, "price"),
            (ord::CURRENCY, "currency"),
            (ord::ACTION, "action"),
        ];
        assert_eq!(o.len(), ORDER_COLUMNS.len());
        for (i, n) in o {
            assert_eq!(ORDER_COLUMNS[i].name, n);
        }
        let s = [
            (shp::FULFILLMENT_ID, "fulfillment_id"),
            (shp::ORDER_REF, "order_ref"),
            (shp::SKU, "sku"),
            (shp::QUANTITY, "quantity"),
            (shp::SHIPPED_AT, "shipped_at"),
            (shp::CARRIER, "carrier"),
            (shp::TRACKING_NUMBER, "tracking_number"),
            (shp::SERVICE, "service"),
            (shp::COST, "cost"),
            (shp::WEIGHT, "weight"),
        ];
        assert_eq!(s.len(), SHIPMENT_COLUMNS.len());
        for (i, n) in s {
            assert_eq!(SHIPMENT_COLUMNS[i].name, n);
        }
    }

    #[test]
    fn every_alias_targets_a_canonical_column() {
        for (alias, target) in ALIASES {
            assert!(Kind::ALL.iter().any(|k| columns(*k).iter().any(|d| d.name == *target)), "{alias} -> {target}");
            assert_eq!(normalize(alias), *alias);
        }
    }

    #[test]
    fn sniffs_kinds() {
        let h = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        assert_eq!(sniff(&h("SKU,Qty")), Some(Kind::Inventory));
        assert_eq!(sniff(&h("item,qty,upc")), Some(Kind::Inventory));
        assert_eq!(
            sniff(&h("order_ref,order_date,ship_name,ship_address1,ship_city,ship_country,sku,quantity")),
            Some(Kind::Orders)
        );
        assert_eq!(sniff(&h("cust_ref,item,qty,ship_date,ship_via,tracking_no")), Some(Kind::Shipments));
        assert_eq!(sniff(&h("a,b")), None);
    }
}
