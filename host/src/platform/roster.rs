//! Reading a resident roster (CSV or XLSX) into checked rows. Column headers may be Chinese
//! or English: 姓名/name, 手机号/phone, 身份证号/id_number, 出生日期/birth_date, 户/household,
//! 住址/address, 标签/tags, 所属/tenant.

use std::collections::HashMap;
use std::io::Cursor;

use super::people::RowError;
use crate::storage::people::{self, PersonInput};

/// A sheet: header cells and data rows, as text.
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

pub(super) fn read_csv(bytes: &[u8]) -> Result<Table, String> {
    // Excel saves CSV with a UTF-8 byte-order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("CSV 表头无法读取 / cannot read the CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            format!(
                "第 {} 行无法读取（须为 UTF-8 编码的 CSV） / row {} is unreadable (CSV must be UTF-8): {e}",
                i + 2,
                i + 2
            )
        })?;
        rows.push(record.iter().map(|c| c.trim().to_owned()).collect());
        if rows.len() > super::people::IMPORT_MAX_ROWS {
            break;
        }
    }
    Ok(Table { headers, rows })
}

pub(super) fn read_xlsx(bytes: &[u8]) -> Result<Table, String> {
    use calamine::{Data, Reader, Xlsx};
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes))
        .map_err(|e| format!("不是有效的 XLSX 文件 / not a readable XLSX file: {e}"))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or("XLSX 文件没有工作表 / the XLSX file has no sheet")?
        .map_err(|e| format!("无法读取第一个工作表 / cannot read the first sheet: {e}"))?;
    let cell = |d: &Data| -> String {
        match d {
            Data::Empty => String::new(),
            Data::String(s) => s.trim().to_owned(),
            // Phone and ID numbers typed into Excel become numbers.
            Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => format!("{}", *f as i64),
            Data::Float(f) => f.to_string(),
            Data::Int(i) => i.to_string(),
            Data::Bool(b) => b.to_string(),
            Data::DateTime(dt) => excel_date(dt.as_f64()),
            Data::DateTimeIso(s) => s.chars().take(10).collect(),
            Data::DurationIso(s) => s.clone(),
            Data::Error(e) => format!("#{e:?}"),
        }
    };
    let mut rows = range.rows();
    let headers = rows
        .next()
        .ok_or("工作表是空的 / the sheet is empty")?
        .iter()
        .map(cell)
        .collect();
    let rows = rows
        .take(super::people::IMPORT_MAX_ROWS + 1)
        .map(|r| r.iter().map(cell).collect())
        .collect();
    Ok(Table { headers, rows })
}

/// An Excel serial date (days since 1899-12-30) as `YYYY-MM-DD`.
fn excel_date(serial: f64) -> String {
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

    #[test]
    fn unknown_and_missing_columns() {
        let t = read_csv("phone,colour\n13800138000,red\n".as_bytes()).unwrap();
        let (_, errors) = rows(&t, "dongcun", &["dongcun".into()]);
        assert!(errors.iter().any(|e| e.field == "colour"));
        assert!(errors.iter().any(|e| e.field == "name"));
    }
}
