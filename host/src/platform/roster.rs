//! Reading a resident roster (CSV or XLSX) into checked rows. Column headers may be Chinese
//! or English: 姓名/name, 手机号/phone, 身份证号/id_number, 出生日期/birth_date, 户/household,
//! 住址/address, 标签/tags, 所属/tenant.

use std::collections::HashMap;
use std::io::Cursor;

use super::people::RowError;
use crate::storage::people::{self, PersonInput};

/// A sheet: header cells and data rows, as text.
#[derive(Debug)]
pub(super) struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

const COLUMNS: &[(&str, &[&str])] = &[
    ("name", &["name", "姓名"]),
    ("phone", &["phone", "手机号", "手机", "电话"]),
    (
        "id_number",
        &["id_number", "身份证号", "身份证", "身份证号码"],
    ),
    ("birth_date", &["birth_date", "出生日期"]),
    ("household", &["household", "户", "户号", "家庭"]),
    ("address", &["address", "住址", "地址"]),
    ("tags", &["tags", "标签"]),
    ("tenant", &["tenant", "所属", "所属村社", "网格"]),
];

/// Most columns a sheet may have (a roster uses eight; a device list seven).
pub(super) const MAX_COLUMNS: usize = 64;

/// Most bytes all of an XLSX file's parts may unpack to, per byte of the file: a zip bomb is
/// refused before anything is parsed.
const XLSX_EXPANSION: usize = 4;

/// Most parts (files) in an XLSX container.
const XLSX_MAX_PARTS: usize = 1_000;

fn too_many_rows() -> String {
    let max = super::people::IMPORT_MAX_ROWS;
    format!("一次最多导入 {max} 行 / at most {max} rows per import")
}

fn too_many_columns() -> String {
    format!("表格最多 {MAX_COLUMNS} 列 / a sheet has at most {MAX_COLUMNS} columns")
}

/// Read a file to import, off the async threads (parsing a large sheet takes a while), and
/// with a parser's panic on a malformed file answered as an unreadable file.
pub(super) async fn read(format: super::ImportFormat, bytes: &[u8]) -> Result<Table, String> {
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || match format {
        super::ImportFormat::Csv => read_csv(&bytes),
        super::ImportFormat::Xlsx => read_xlsx(&bytes),
    })
    .await
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, "an import's file made its parser fail");
        Err("文件无法读取（格式损坏） / the file cannot be read (it is malformed)".into())
    })
}

pub(super) fn read_csv(bytes: &[u8]) -> Result<Table, String> {
    // Excel saves CSV with a UTF-8 byte-order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| format!("CSV 表头无法读取 / cannot read the CSV header: {e}"))?;
    if header.len() > MAX_COLUMNS {
        return Err(too_many_columns());
    }
    let headers = header.iter().map(|h| h.trim().to_owned()).collect();
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = rows.len() + 2;
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                return Err(format!(
                    "第 {line} 行无法读取（须为 UTF-8 编码的 CSV） / row {line} is unreadable (CSV must be UTF-8): {e}"
                ));
            }
        }
        if record.len() > MAX_COLUMNS {
            return Err(format!(
                "第 {line} 行：{} / row {line}: {}",
                too_many_columns(),
                too_many_columns()
            ));
        }
        if rows.len() >= super::people::IMPORT_MAX_ROWS {
            return Err(too_many_rows());
        }
        rows.push(record.iter().map(|c| c.trim().to_owned()).collect());
    }
    Ok(Table { headers, rows })
}

/// Unpack every part of the XLSX container with a hard bound on what each and all may grow
/// to, whatever sizes the container claims, so that the parser after this reads at most
/// that much.
fn check_container(bytes: &[u8]) -> Result<(), String> {
    let not_xlsx =
        |e: &dyn std::fmt::Display| format!("不是有效的 XLSX 文件 / not a readable XLSX file: {e}");
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| not_xlsx(&e))?;
    if zip.len() > XLSX_MAX_PARTS {
        return Err(format!(
            "XLSX 文件包含过多部件 / the XLSX file has more than {XLSX_MAX_PARTS} parts"
        ));
    }
    let budget = bytes.len().saturating_mul(XLSX_EXPANSION).max(1 << 20) as u64;
    let mut total = 0u64;
    let mut sink = [0u8; 16 << 10];
    for i in 0..zip.len() {
        let part = zip.by_index(i).map_err(|e| not_xlsx(&e))?;
        let mut limited = std::io::Read::take(part, budget - total + 1);
        loop {
            let n = std::io::Read::read(&mut limited, &mut sink).map_err(|e| not_xlsx(&e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > budget {
                return Err(format!(
                    "XLSX 文件解压后过大 / the XLSX file unpacks to more than {budget} bytes (limits.import_bytes × {XLSX_EXPANSION})"
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn read_xlsx(bytes: &[u8]) -> Result<Table, String> {
    use calamine::{DataRef, Reader, Xlsx};
    check_container(bytes)?;
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes))
        .map_err(|e| format!("不是有效的 XLSX 文件 / not a readable XLSX file: {e}"))?;
    let first = book
        .sheet_names()
        .first()
        .cloned()
        .ok_or("XLSX 文件没有工作表 / the XLSX file has no sheet")?;
    // Cell by cell, never the sheet's declared dimensions: a sheet whose cells are A1 and
    // XFD1048576 is two cells here, and refused at the first one out of bounds.
    let mut cells = book
        .worksheet_cells_reader(&first)
        .map_err(|e| format!("无法读取第一个工作表 / cannot read the first sheet: {e}"))?;
    let text = |d: &DataRef<'_>| -> String {
        match d {
            DataRef::Empty => String::new(),
            DataRef::String(s) => s.trim().to_owned(),
            DataRef::SharedString(s) => s.trim().to_owned(),
            // Phone and ID numbers typed into Excel become numbers.
            DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => format!("{}", *f as i64),
            DataRef::Float(f) => f.to_string(),
            DataRef::Int(i) => i.to_string(),
            DataRef::Bool(b) => b.to_string(),
            DataRef::DateTime(dt) => excel_date(dt.as_f64()),
            DataRef::DateTimeIso(s) => s.chars().take(10).collect(),
            DataRef::DurationIso(s) => s.clone(),
            DataRef::Error(e) => format!("#{e:?}"),
        }
    };
    let max_rows = super::people::IMPORT_MAX_ROWS as u32 + 1;
    let mut grid: Vec<Vec<String>> = Vec::new();
    while let Some(cell) = cells
        .next_cell()
        .map_err(|e| format!("无法读取第一个工作表 / cannot read the first sheet: {e}"))?
    {
        let (row, col) = cell.get_position();
        if col as usize >= MAX_COLUMNS {
            return Err(too_many_columns());
        }
        if row >= max_rows {
            return Err(too_many_rows());
        }
        let value = text(cell.get_value());
        if value.is_empty() {
            continue;
        }
        let (row, col) = (row as usize, col as usize);
        if grid.len() <= row {
            grid.resize_with(row + 1, Vec::new);
        }
        let r = &mut grid[row];
        if r.len() <= col {
            r.resize(col + 1, String::new());
        }
        r[col] = value;
    }
    let mut rows = grid.into_iter();
    let headers = rows.next().ok_or("工作表是空的 / the sheet is empty")?;
    if headers.is_empty() {
        return Err("工作表第一行是空的 / the sheet's first row is empty".into());
    }
    Ok(Table {
        headers,
        rows: rows.collect(),
    })
}

/// An Excel serial date (days since 1899-12-30) as `YYYY-MM-DD`; a number outside the
/// years 1900–9999 is given back as written.
fn excel_date(serial: f64) -> String {
    if !(1.0..=2_958_465.0).contains(&serial) {
        return serial.to_string();
    }
    // Days from 1970-01-01, then the civil-from-days algorithm (H. Hinnant).
    let z = serial.floor() as i64 - 25_569 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Map a sheet's header cells to column keys by their Chinese or English names. Errors (row 1)
/// for unknown or repeated columns and for each of `required` missing; `known` lists the
/// columns for the message.
pub(super) fn columns<'a>(
    table: &Table,
    columns: &'a [(&'a str, &'a [&'a str])],
    known: &str,
    required: &[&str],
) -> (HashMap<&'a str, usize>, Vec<RowError>) {
    let mut errors = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, h) in table.headers.iter().enumerate() {
        let h = h.trim().to_lowercase();
        match columns
            .iter()
            .find(|(_, names)| names.contains(&h.as_str()))
        {
            Some((key, _)) => {
                if index.insert(key, i).is_some() {
                    errors.push(RowError {
                        row: 1,
                        field: (*key).into(),
                        message: format!("列重复 / column {h:?} appears twice"),
                    });
                }
            }
            None if h.is_empty() => {}
            None => errors.push(RowError {
                row: 1,
                field: h.clone(),
                message: format!("未知列 / unknown column {h:?}; columns: {known}"),
            }),
        }
    }
    for key in required {
        if !index.contains_key(key) {
            errors.push(RowError {
                row: 1,
                field: (*key).into(),
                message: format!("缺少必填列 / the column {key:?} is required"),
            });
        }
    }
    (index, errors)
}

/// The person fields a sheet without these columns leaves as they are on re-import.
pub(super) fn absent_fields(table: &Table) -> Vec<&'static str> {
    let (index, _) = columns(table, COLUMNS, "", &[]);
    let mut absent: Vec<&'static str> = ["phone", "id_number", "household", "address", "tags"]
        .into_iter()
        .filter(|f| !index.contains_key(f))
        .collect();
    // A birth date comes from its column or from the ID number.
    if !index.contains_key("birth_date") && !index.contains_key("id_number") {
        absent.push("birth_date");
    }
    absent
}

/// Check every row: (spreadsheet row number, home tenant, fields), and the errors found.
pub(super) fn rows(
    table: &Table,
    default_tenant: &str,
    subtree: &[String],
) -> (Vec<(usize, String, PersonInput)>, Vec<RowError>) {
    let (index, mut errors) = columns(
        table,
        COLUMNS,
        "姓名/name, 手机号/phone, 身份证号/id_number, 出生日期/birth_date, 户/household, 住址/address, 标签/tags, 所属/tenant",
        &[],
    );
    if !index.contains_key("name") {
        errors.push(RowError {
            row: 1,
            field: "name".into(),
            message: "缺少“姓名”列 / the name column is missing".into(),
        });
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, row) in table.rows.iter().enumerate() {
        let line = i + 2;
        if row.iter().all(|c| c.is_empty()) {
            continue;
        }
        let get = |key: &str| -> Option<String> {
            index
                .get(key)
                .and_then(|&c| row.get(c))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let id_number = get("id_number").map(|v| v.to_uppercase());
        let birth_date = get("birth_date").or_else(|| {
            id_number
                .as_deref()
                .filter(|id| id.len() == 18 && id.is_ascii())
                .map(|id| format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14]))
        });
        let tags = get("tags")
            .map(|t| {
                t.split([',', ';', '、', '，', '；', ' '])
                    .map(crate::storage::people::tag_for_word)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let input = PersonInput {
            name: get("name").unwrap_or_default(),
            phone: get("phone"),
            id_number,
            birth_date,
            household: get("household"),
            address: get("address"),
            tags,
        };
        let tenant = get("tenant").unwrap_or_else(|| default_tenant.to_owned());
        if !subtree.contains(&tenant) {
            errors.push(RowError {
                row: line,
                field: "tenant".into(),
                message: format!(
                    "{tenant} 不在 {default_tenant} 之下 / {tenant} is not in {default_tenant}"
                ),
            });
            continue;
        }
        if let Err((field, message)) = people::validate(&input) {
            errors.push(RowError {
                row: line,
                field,
                message,
            });
            continue;
        }
        let mut duplicate = false;
        for (field, key) in [("id_number", &input.id_number), ("phone", &input.phone)] {
            if let Some(k) = key
                && let Some(first) = seen.insert(format!("{field}:{k}"), line)
            {
                errors.push(RowError {
                    row: line,
                    field: field.into(),
                    message: format!("与第 {first} 行重复 / duplicates row {first}"),
                });
                duplicate = true;
            }
        }
        if !duplicate {
            out.push((line, tenant, input));
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_dates() {
        assert_eq!(excel_date(f64::MAX), f64::MAX.to_string());
        assert_eq!(excel_date(-5.0), "-5");
        assert_eq!(excel_date(f64::NAN), "NaN");
        assert_eq!(excel_date(25_569.0), "1970-01-01");
        assert_eq!(excel_date(18_264.0), "1950-01-01");
        assert_eq!(excel_date(45_658.5), "2025-01-01");
    }

    #[test]
    fn rows_are_checked_and_reported_by_line() {
        let csv = "姓名,手机号,身份证号,标签\n张三,13800138000,11010519491231002X,elderly、独居\n,13800138001,,\n李四,13800138000,,\n";
        let t = read_csv(csv.as_bytes()).unwrap();
        let subtree = vec!["dongcun".to_string()];
        let (ok, errors) = rows(&t, "dongcun", &subtree);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].2.birth_date.as_deref(), Some("1949-12-31"));
        assert_eq!(ok[0].2.tags, vec!["elderly", "living-alone"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!((errors[0].row, errors[0].field.as_str()), (3, "name"));
        assert_eq!((errors[1].row, errors[1].field.as_str()), (4, "phone"));
    }

    /// A minimal XLSX container with `sheet` as its first worksheet's XML.
    pub(crate) fn xlsx_with_sheet(sheet: &str) -> Vec<u8> {
        use std::io::Write;
        let mut buf = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let parts = [
            (
                "[Content_Types].xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
            ),
            (
                "_rels/.rels",
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
            ),
            (
                "xl/workbook.xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
            ),
            ("xl/worksheets/sheet1.xml", sheet),
        ];
        for (name, text) in parts {
            zip.start_file(name, opts).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        buf.into_inner()
    }

    fn sheet(dimension: &str, cells: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>{cells}</sheetData></worksheet>"#
        )
    }

    #[test]
    fn xlsx_reads_inline_cells() {
        let x = xlsx_with_sheet(&sheet(
            "A1:B2",
            r#"<row r="1"><c r="A1" t="inlineStr"><is><t>姓名</t></is></c><c r="B1" t="inlineStr"><is><t>手机号</t></is></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>张三</t></is></c><c r="B2"><v>13800138000</v></c></row>"#,
        ));
        let t = read_xlsx(&x).unwrap();
        assert_eq!(t.headers, vec!["姓名", "手机号"]);
        assert_eq!(t.rows, vec![vec!["张三".to_string(), "13800138000".into()]]);
    }

    /// The review's 1.6 KB file: cells A1 and XFD1048576 (and a dimension saying so). Read
    /// densely that is ~512 GiB; here it is refused at the far cell, having allocated one.
    #[test]
    fn a_far_cell_is_refused_not_allocated() {
        let x = xlsx_with_sheet(&sheet(
            "A1:XFD1048576",
            r#"<row r="1"><c r="A1" t="inlineStr"><is><t>姓名</t></is></c></row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row>"#,
        ));
        assert!(x.len() < 4096, "{} bytes", x.len());
        let e = read_xlsx(&x).unwrap_err();
        assert!(e.contains("columns"), "{e}");
        let x = xlsx_with_sheet(&sheet(
            "A1:A1048576",
            r#"<row r="1"><c r="A1" t="inlineStr"><is><t>姓名</t></is></c></row><row r="1048576"><c r="A1048576"><v>1</v></c></row>"#,
        ));
        let e = read_xlsx(&x).unwrap_err();
        assert!(e.contains("rows"), "{e}");
    }

    /// A shared-string cell pointing past the (missing) shared strings: the parser's panic
    /// is answered as a malformed file.
    #[tokio::test]
    async fn a_parser_panic_is_an_unreadable_file() {
        let x = xlsx_with_sheet(&sheet(
            "A1",
            r#"<row r="1"><c r="A1" t="s"><v>7</v></c></row>"#,
        ));
        let e = read(crate::platform::ImportFormat::Xlsx, &x)
            .await
            .unwrap_err();
        assert!(e.contains("malformed") || e.contains("cannot read"), "{e}");
    }

    #[test]
    fn a_zip_bomb_is_refused_before_parsing() {
        // 4 MiB of one repeated cell compresses to a few KiB, whose budget is 1 MiB.
        let mut cells = String::with_capacity(4 << 20);
        while cells.len() < 4 << 20 {
            cells.push_str(r#"<c t="inlineStr"><is><t>x</t></is></c>"#);
        }
        let x = xlsx_with_sheet(&sheet("A1", &format!(r#"<row r="1">{cells}</row>"#)));
        assert!(x.len() < 64 << 10, "{} bytes", x.len());
        let e = read_xlsx(&x).unwrap_err();
        assert!(e.contains("unpacks"), "{e}");
    }

    #[test]
    fn csv_rows_and_columns_are_bounded() {
        let wide = format!("name{}\nx\n", ",c".repeat(MAX_COLUMNS));
        assert!(read_csv(wide.as_bytes()).unwrap_err().contains("columns"));
        let wide_row = format!("name\nx{}\n", ",".repeat(MAX_COLUMNS));
        assert!(
            read_csv(wide_row.as_bytes())
                .unwrap_err()
                .contains("columns")
        );
        let long = format!(
            "name\n{}",
            "x\n".repeat(crate::platform::people::IMPORT_MAX_ROWS + 1)
        );
        assert!(read_csv(long.as_bytes()).unwrap_err().contains("rows"));
    }

    #[test]
    fn unknown_and_missing_columns() {
        let t = read_csv("phone,colour\n13800138000,red\n".as_bytes()).unwrap();
        let (_, errors) = rows(&t, "dongcun", &["dongcun".into()]);
        assert!(errors.iter().any(|e| e.field == "colour"));
        assert!(errors.iter().any(|e| e.field == "name"));
    }
}
