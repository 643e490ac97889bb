//! Reading segment files: columns, aliases, line numbers, malformed rows, Unicode, blank rows.

use super::*;

fn read(format: SegmentFormat, text: &str) -> Vec<Result<Row, ReadError>> {
    let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
    SegmentReader::new(input, format).expect("header").collect()
}

fn ok_users(rows: &[Result<Row, ReadError>]) -> Vec<(u64, String, Option<String>)> {
    rows.iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| {
            (
                r.line,
                r.user.external_id.clone(),
                r.user.messenger_id.clone(),
            )
        })
        .collect()
}

fn errors(rows: &[Result<Row, ReadError>]) -> Vec<(u64, String)> {
    rows.iter()
        .filter_map(|r| match r {
            Err(ReadError::Row(e)) => Some((e.line, e.reason.clone())),
            Err(ReadError::Stopped(e)) => panic!("the reader stopped: {e}"),
            Ok(_) => None,
        })
        .collect()
}

/// Rows until the reader stopped, and the line it stopped at (it must stop).
fn stopped(input: Box<dyn Read + Send>, format: SegmentFormat) -> (Vec<String>, u64) {
    let mut reader = SegmentReader::new(input, format).expect("header");
    let mut ids = Vec::new();
    for row in reader.by_ref() {
        match row {
            Ok(row) => ids.push(row.user.external_id),
            Err(ReadError::Row(error)) => panic!("a malformed row: {error}"),
            Err(ReadError::Stopped(SegmentError::LineTooLong { line })) => {
                assert!(reader.next().is_none(), "the reader ends after stopping");
                return (ids, line);
            }
            Err(ReadError::Stopped(other)) => panic!("stopped by {other}"),
        }
    }
    panic!("the reader never stopped; rows: {ids:?}")
}

/// An endless input that fails the test once far more than the cap has been read from it.
struct Endless {
    prefix: std::io::Cursor<Vec<u8>>,
    byte: u8,
    served: usize,
}

impl Endless {
    fn boxed(prefix: &str, byte: u8) -> Box<dyn Read + Send> {
        Box::new(Self {
            prefix: std::io::Cursor::new(prefix.as_bytes().to_vec()),
            byte,
            served: 0,
        })
    }
}

impl Read for Endless {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.prefix.read(buffer)?;
        if n > 0 {
            return Ok(n);
        }
        assert!(
            self.served < 4 * MAX_LINE_BYTES,
            "read {} bytes of one row: the reader buffers without bound",
            self.served
        );
        buffer.fill(self.byte);
        self.served += buffer.len();
        Ok(buffer.len())
    }
}

#[test]
fn csv_rows_with_attributes_aliases_and_line_numbers() {
    let text = "\u{feff}external_id,psid,last_inbound_at,first_name,country\n\
                u1,111,2026-11-20T10:00:00Z,Zoë,BR\n\
                u2,,,\"Ana, \"\"A\"\"\",PT\n\
                \n\
                ,,,,\n\
                u3, 333 ,,名前,JP\n";
    let rows = read(SegmentFormat::Csv, text);
    assert_eq!(
        ok_users(&rows),
        vec![
            (2, "u1".into(), Some("111".into())),
            (3, "u2".into(), Some(String::new())),
            (6, "u3".into(), Some("333".into())),
        ]
    );
    let first = rows[0].as_ref().expect("row");
    assert_eq!(first.user.attributes["first_name"], "Zoë");
    assert!(first.user.last_inbound_at.is_some());
    assert_eq!(
        rows[1].as_ref().expect("row").user.attributes["first_name"],
        "Ana, \"A\""
    );
    assert_eq!(
        rows[2].as_ref().expect("row").user.attributes["first_name"],
        "名前"
    );
}

#[test]
fn malformed_csv_rows_are_reported_with_their_line_and_reading_goes_on() {
    let text = "external_id,messenger_id,last_inbound_at\n\
                u1,1,\n\
                u2,2\n\
                ,3,\n\
                u4,4,yesterday\n\
                u5,5,\n";
    let rows = read(SegmentFormat::Csv, text);
    assert_eq!(
        ok_users(&rows),
        vec![
            (2, "u1".into(), Some("1".into())),
            (6, "u5".into(), Some("5".into()))
        ]
    );
    let errors = errors(&rows);
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(
        errors[0].1.contains("2 fields where the header has 3"),
        "{errors:?}"
    );
    assert!(errors[1].1.contains("external_id"), "{errors:?}");
    assert!(errors[2].1.contains("RFC 3339"), "{errors:?}");
}

#[test]
fn invalid_utf8_in_csv_is_a_row_error() {
    let mut bytes = b"external_id,messenger_id\nu1,1\nu2,".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
    bytes.extend_from_slice(b"u3,3\n");
    let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(bytes));
    let rows: Vec<_> = SegmentReader::new(input, SegmentFormat::Csv)
        .expect("header")
        .collect();
    assert_eq!(ok_users(&rows).len(), 2);
    assert_eq!(errors(&rows), vec![(3, "not valid UTF-8".to_owned())]);
}

#[test]
fn csv_header_without_required_columns_is_a_file_error() {
    for (text, column) in [
        ("id,messenger_id\n", "external_id"),
        ("external_id,name\n", "messenger_id"),
    ] {
        let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
        match SegmentReader::new(input, SegmentFormat::Csv) {
            Err(SegmentError::MissingColumn(missing)) => assert_eq!(missing, column),
            other => panic!("expected MissingColumn({column}), got {:?}", other.err()),
        }
    }
}

#[test]
fn jsonl_rows_values_and_errors() {
    let text = r#"{"external_id":"u1","messenger_id":"111","first_name":"Zoë","age":31,"vip":true,"tags":["a"]}
{"external_id":42,"psid":"222","nickname":null}

not json
[1,2]
{"messenger_id":"333"}
{"external_id":"u7","last_inbound_at":"2026-11-20T10:00:00+02:00"}
"#;
    let rows = read(SegmentFormat::Jsonl, text);
    assert_eq!(
        ok_users(&rows),
        vec![
            (1, "u1".into(), Some("111".into())),
            (2, "42".into(), Some("222".into())),
            (7, "u7".into(), None)
        ]
    );
    let first = &rows[0].as_ref().expect("row").user;
    assert_eq!(first.attributes["age"], "31");
    assert_eq!(first.attributes["vip"], "true");
    assert_eq!(first.attributes["tags"], "[\"a\"]");
    assert!(
        !rows[1]
            .as_ref()
            .expect("row")
            .user
            .attributes
            .contains_key("nickname")
    );
    assert_eq!(
        errors(&rows),
        vec![
            (4, "not JSON (syntax error)".to_owned()),
            (5, "not a JSON object".to_owned()),
            (6, "external_id is missing or blank".to_owned())
        ]
    );
}

#[test]
fn format_follows_the_extension() {
    assert_eq!(
        SegmentFormat::from_path(Path::new("a/users.JSONL")),
        SegmentFormat::Jsonl
    );
    assert_eq!(
        SegmentFormat::from_path(Path::new("users.ndjson")),
        SegmentFormat::Jsonl
    );
    assert_eq!(
        SegmentFormat::from_path(Path::new("users.csv")),
        SegmentFormat::Csv
    );
}

#[test]
fn a_row_over_the_cap_stops_the_reader_with_its_line() {
    let long = "x".repeat(MAX_LINE_BYTES);
    let csv = format!("external_id,messenger_id\nu1,1\nu2,{long}\nu3,3\n");
    let (ids, line) = stopped(
        Box::new(std::io::Cursor::new(csv.into_bytes())),
        SegmentFormat::Csv,
    );
    assert_eq!((ids, line), (vec!["u1".to_owned()], 3));
    let jsonl =
        format!("{{\"external_id\":\"u1\"}}\n\n{{\"external_id\":\"u2\",\"a\":\"{long}\"}}\n");
    let (ids, line) = stopped(
        Box::new(std::io::Cursor::new(jsonl.into_bytes())),
        SegmentFormat::Jsonl,
    );
    assert_eq!((ids, line), (vec!["u1".to_owned()], 3));
    // A row just under the cap is a row.
    let fits = format!(
        "external_id,psid,note\nu1,1,{}\n",
        "y".repeat(MAX_LINE_BYTES - 5)
    );
    let rows = read(SegmentFormat::Csv, &fits);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].is_ok());
}

#[test]
fn endless_input_without_line_breaks_stops_within_the_cap() {
    let (ids, line) = stopped(
        Endless::boxed("external_id,messenger_id\nu1,1\n", 0),
        SegmentFormat::Csv,
    );
    assert_eq!((ids, line), (vec!["u1".to_owned()], 3));
    let (ids, line) = stopped(
        Endless::boxed("{\"external_id\":\"u1\"}\n", 0),
        SegmentFormat::Jsonl,
    );
    assert_eq!((ids, line), (vec!["u1".to_owned()], 2));
    // A CSV quote never closed: short lines, one endless row.
    let (ids, line) = stopped(
        Endless::boxed("external_id,messenger_id\nu1,\"1\n", b'\n'),
        SegmentFormat::Csv,
    );
    assert_eq!((ids, line), (Vec::<String>::new(), 2));
    // A header that never ends.
    match SegmentReader::new(Endless::boxed("external_id", b'x'), SegmentFormat::Csv) {
        Err(SegmentError::LineTooLong { line }) => assert_eq!(line, 1),
        other => panic!("expected LineTooLong, got {:?}", other.err()),
    }
}

#[test]
fn invalid_utf8_in_jsonl_is_a_row_error_and_the_next_row_is_read() {
    let mut bytes = b"{\"external_id\":\"u1\"}\n{\"external_id\":\"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\"}\n{\"external_id\":\"u3\"}\n");
    let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(bytes));
    let rows: Vec<_> = SegmentReader::new(input, SegmentFormat::Jsonl)
        .expect("reader")
        .collect();
    assert_eq!(
        ok_users(&rows),
        vec![(1, "u1".into(), None), (3, "u3".into(), None)]
    );
    assert_eq!(errors(&rows), vec![(2, "not valid UTF-8".to_owned())]);
}

#[test]
fn ids_that_fail_validation_are_malformed_rows_and_reading_goes_on() {
    let long = "x".repeat(herald_core::MAX_ID_BYTES + 1);
    let csv = format!(
        "external_id,messenger_id\nu1,1\n\"a\u{0}b\",2\n{long},3\nu4,\"4\u{7}\"\nu5,\nu6,6\n"
    );
    let rows = read(SegmentFormat::Csv, &csv);
    assert_eq!(
        ok_users(&rows),
        vec![
            (2, "u1".into(), Some("1".into())),
            (6, "u5".into(), Some(String::new())),
            (7, "u6".into(), Some("6".into()))
        ]
    );
    let problems = errors(&rows);
    assert_eq!(
        problems.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(
        problems[0].1.starts_with("external_id contains a control"),
        "{problems:?}"
    );
    assert!(problems[1].1.contains("at most 256 bytes"), "{problems:?}");
    assert!(
        problems[2].1.starts_with("messenger_id contains a control"),
        "{problems:?}"
    );
    let jsonl = format!(
        "{{\"external_id\":\"a\\u0000\"}}\n{{\"external_id\":\"{long}\"}}\n{{\"external_id\":\"u3\",\"psid\":\"\\n1\\t2\"}}\n{{\"external_id\":\"u4\"}}\n"
    );
    let rows = read(SegmentFormat::Jsonl, &jsonl);
    assert_eq!(ok_users(&rows), vec![(4, "u4".into(), None)]);
    assert_eq!(
        errors(&rows).iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}
