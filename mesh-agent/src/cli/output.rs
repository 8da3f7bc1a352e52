//! Consul's output layouts: `columnize` tables (columns padded to their widest cell, two
//! spaces apart, the last column unpadded) and `Key:  value` blocks.

/// Rows as a table: each cell padded to its column's width, columns joined by two spaces,
/// the last cell of a row not padded, no trailing newline.
pub(crate) fn columnize<S: AsRef<str>>(rows: &[Vec<S>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.as_ref().chars().count());
        }
    }
    let mut out = String::new();
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            out.push('\n');
        }
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let cell = cell.as_ref();
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
    }
    out
}

/// `Key:` / value pairs as a two-column table (Consul's `Key:\x1fvalue` lines through
/// columnize).
pub(crate) fn key_values<K: AsRef<str>>(pairs: &[(K, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(k, v)| vec![format!("{}:", k.as_ref()), v.clone()])
        .collect();
    columnize(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_and_two_spaces_apart() {
        let rows = vec![
            vec!["Node", "Address", "Status"],
            vec!["primary-server-1", "127.0.0.1:8301", "alive"],
        ];
        assert_eq!(
            columnize(&rows),
            "Node              Address         Status\nprimary-server-1  127.0.0.1:8301  alive"
        );
    }

    #[test]
    fn empty_tables_and_empty_last_cells() {
        let none: Vec<Vec<String>> = Vec::new();
        assert_eq!(columnize(&none), "");
        assert_eq!(
            key_values(&[("Source", "web".into()), ("Description", String::new())]),
            "Source:       web\nDescription:"
        );
    }
}
