//! Line numbers of the elements of a JSON list, so that an error about item
//! `i` can name the line it starts on.

/// The 1-based line on which each top-level element of the JSON array in
/// `text` starts. Returns `None` if `text` is not an array (the JSON parser
/// then reports the error itself).
pub fn element_lines(text: &str) -> Option<Vec<usize>> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let skip_ws = |i: &mut usize, line: &mut usize| {
        while *i < bytes.len() && bytes[*i].is_ascii_whitespace() {
            if bytes[*i] == b'\n' {
                *line += 1;
            }
            *i += 1;
        }
    };
    skip_ws(&mut i, &mut line);
    if bytes.get(i) != Some(&b'[') {
        return None;
    }
    i += 1;
    let mut lines = Vec::new();
    loop {
        skip_ws(&mut i, &mut line);
        match bytes.get(i) {
            None => return Some(lines),
            Some(b']') => return Some(lines),
            Some(b',') => {
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        lines.push(line);
        // Skip one value: strings with escapes, nested brackets, scalars.
        let mut depth = 0usize;
        let mut in_string = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'\n' {
                line += 1;
            }
            if in_string {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_string = false;
                }
            } else {
                match c {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b']' if depth == 0 => break,
                    _ => {}
                }
            }
            i += 1;
            if depth == 0 && !in_string && matches!(c, b'}' | b']' | b'"') {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::element_lines;

    #[test]
    fn lines_of_elements() {
        let text = "[\n  {\"a\": \"x,]\\\"y\"},\n  {\"b\": [1, {\"c\": 2}]\n  },\n\n  3, \"s\"\n]";
        assert_eq!(element_lines(text), Some(vec![2, 3, 6, 6]));
        assert_eq!(element_lines("[]"), Some(vec![]));
        assert_eq!(element_lines("{}"), None);
    }
}
