//! A minimal RESP2 encoder and parser: just enough to drive a real server
//! from tests without depending on the client library under test.

/// One RESP2 value as sent by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style status line.
    Simple(String),
    /// `-ERR ...`-style error line (the text after the `-`).
    Error(String),
    /// `:42`-style integer.
    Integer(i64),
    /// Bulk string; `None` is the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// Array; `None` is the null array (`*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The value of an [`Reply::Integer`]; `None` for every other variant.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Reply::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The text of a [`Reply::Simple`] or a non-null UTF-8 [`Reply::Bulk`];
    /// `None` otherwise (including errors, so they are never mistaken for data).
    pub fn as_string(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(bytes)) => String::from_utf8(bytes.clone()).ok(),
            _ => None,
        }
    }

    /// The elements of a non-null [`Reply::Array`]; an empty `Vec` otherwise.
    pub fn into_array(self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(items)) => items,
            _ => Vec::new(),
        }
    }
}

/// Encodes a command as a RESP2 array of bulk strings.
pub(crate) fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Tries to parse one reply from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a reply (read more and
/// retry), `Ok(Some((reply, consumed)))` when a whole reply is present, and
/// `Err` when the bytes are not RESP2.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..line_end].split_first() else {
        return Err("empty RESP line".to_owned());
    };
    let line = std::str::from_utf8(line).map_err(|e| format!("non-UTF-8 RESP header: {e}"))?;
    let after_line = line_end + 2;
    match kind {
        b'+' => Ok(Some((Reply::Simple(line.to_owned()), after_line))),
        b'-' => Ok(Some((Reply::Error(line.to_owned()), after_line))),
        b':' => Ok(Some((Reply::Integer(parse_int(line)?), after_line))),
        b'$' => {
            let len = parse_int(line)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), after_line)));
            }
            let len = usize::try_from(len).map_err(|e| e.to_string())?;
            let end = after_line + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err("bulk string not terminated by CRLF".to_owned());
            }
            Ok(Some((
                Reply::Bulk(Some(buf[after_line..end].to_vec())),
                end + 2,
            )))
        }
        b'*' => {
            let len = parse_int(line)?;
            if len < 0 {
                return Ok(Some((Reply::Array(None), after_line)));
            }
            let len = usize::try_from(len).map_err(|e| e.to_string())?;
            // Cap the pre-allocation: the length comes from the wire.
            let mut items = Vec::with_capacity(len.min(1024));
            let mut pos = after_line;
            for _ in 0..len {
                match parse(&buf[pos..])? {
                    Some((item, used)) => {
                        items.push(item);
                        pos += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        other => Err(format!("unknown RESP type byte {:?}", other as char)),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn parse_int(text: &str) -> Result<i64, String> {
    text.parse()
        .map_err(|e| format!("bad RESP integer {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_bulk_array() {
        assert_eq!(
            encode_command(&["SET", "k", "v"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n".to_vec()
        );
    }

    #[test]
    fn parses_every_kind_and_reports_partial_input() {
        let wire = b"*5\r\n+OK\r\n-ERR no\r\n:-7\r\n$3\r\nabc\r\n$-1\r\n";
        let (reply, used) = parse(wire).expect("valid RESP").expect("complete");
        assert_eq!(used, wire.len());
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Simple("OK".into()),
                Reply::Error("ERR no".into()),
                Reply::Integer(-7),
                Reply::Bulk(Some(b"abc".to_vec())),
                Reply::Bulk(None),
            ]))
        );
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        assert!(parse(b"?x\r\n").is_err());
    }
}
