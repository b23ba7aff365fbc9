//! Reading protobuf's wire format in place: the primitives every hand-written reader of
//! nines shares (ingest's size scan and OTLP trace reader, [`crate::read`] of a record).
//! Each refuses what prost refuses, with a message that names the field.

/// Deepest nesting scanned; prost refuses deeper messages too (its recursion limit is 100).
pub const MAX_DEPTH: usize = 100;

/// Why bytes were refused: what is malformed, naming the field. Its text is how ingest's
/// doors answer (a request body); [`crate::read`] takes the message alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("request body is not valid protobuf: {0}")]
    Malformed(String),
}

/// A field's payload, as [`next_field`] read it.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Len(&'a [u8]),
    Group,
}

impl<'a> Payload<'a> {
    /// The wire type's name, for messages.
    pub fn wire_type(self) -> &'static str {
        match self {
            Payload::Varint(_) => "varint",
            Payload::Fixed64(_) => "64-bit",
            Payload::Fixed32 => "32-bit",
            Payload::Len(_) => "length-delimited",
            Payload::Group => "group",
        }
    }
}

/// A field of the wrong wire type: `field` is its name in the .proto.
pub fn wrong_type(field: &str, payload: Payload<'_>, expected: &str) -> WireError {
    WireError::Malformed(format!(
        "{field}: {} where {expected} is due",
        payload.wire_type()
    ))
}

/// Puts the path of the message an error happened in before it, e.g.
/// `resource_spans[0].scope_spans[1].spans[7]` + `name: invalid UTF-8`.
pub fn within(path: impl FnOnce() -> String) -> impl FnOnce(WireError) -> WireError {
    move |WireError::Malformed(m)| WireError::Malformed(format!("{}.{m}", path()))
}

/// The next field of a message, or `None` at its end.
pub fn next_field<'a>(
    bytes: &mut &'a [u8],
) -> std::result::Result<Option<(u32, Payload<'a>)>, WireError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let (number, wire_type) = key(bytes)?;
    let payload = match wire_type {
        0 => Payload::Varint(varint(bytes)?),
        1 => {
            let (head, rest) = bytes.split_first_chunk::<8>().ok_or_else(|| {
                WireError::Malformed(format!("field {number}: runs past the end"))
            })?;
            *bytes = rest;
            Payload::Fixed64(u64::from_le_bytes(*head))
        }
        2 => {
            let len = usize::try_from(varint(bytes)?).unwrap_or(usize::MAX);
            if len > bytes.len() {
                return Err(WireError::Malformed(format!(
                    "field {number}: length {len} runs past the end of its message"
                )));
            }
            let (inner, rest) = bytes.split_at(len);
            *bytes = rest;
            Payload::Len(inner)
        }
        3 => {
            skip_group(bytes, number, 0)?;
            Payload::Group
        }
        5 => {
            advance(bytes, 4)?;
            Payload::Fixed32
        }
        other => {
            return Err(WireError::Malformed(format!(
                "field {number}: invalid wire type {other}"
            )));
        }
    };
    Ok(Some((number, payload)))
}

// Each reads one field named `field` (its name in the .proto) of the type it says.

/// A length-delimited field's bytes.
pub fn len<'a>(field: &str, payload: Payload<'a>) -> std::result::Result<&'a [u8], WireError> {
    match payload {
        Payload::Len(b) => Ok(b),
        other => Err(wrong_type(field, other, "length-delimited")),
    }
}

/// A string field's text, refused unless UTF-8 (as prost refuses it).
pub fn text<'a>(field: &str, payload: Payload<'a>) -> std::result::Result<&'a str, WireError> {
    std::str::from_utf8(len(field, payload)?)
        .map_err(|_| WireError::Malformed(format!("{field}: invalid UTF-8")))
}

/// A varint field's value, whatever the width of its type.
pub fn int(field: &str, payload: Payload<'_>) -> std::result::Result<u64, WireError> {
    match payload {
        Payload::Varint(v) => Ok(v),
        other => Err(wrong_type(field, other, "varint")),
    }
}

/// A 64-bit field's value.
pub fn fixed64(field: &str, payload: Payload<'_>) -> std::result::Result<u64, WireError> {
    match payload {
        Payload::Fixed64(v) => Ok(v),
        other => Err(wrong_type(field, other, "64-bit")),
    }
}

/// Skips a (deprecated) group up to its matching end tag, as prost does for unknown fields.
pub fn skip_group(bytes: &mut &[u8], number: u32, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::Malformed(format!(
            "nested deeper than {MAX_DEPTH} groups"
        )));
    }
    loop {
        if bytes.is_empty() {
            return Err(WireError::Malformed(format!(
                "group {number} is not closed"
            )));
        }
        let (inner, wire_type) = key(bytes)?;
        match wire_type {
            0 => {
                varint(bytes)?;
            }
            1 => advance(bytes, 8)?,
            5 => advance(bytes, 4)?,
            2 => {
                let len = varint(bytes)?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                advance(bytes, len)?;
            }
            3 => skip_group(bytes, inner, depth + 1)?,
            4 if inner == number => return Ok(()),
            _ => {
                return Err(WireError::Malformed(format!(
                    "group {number}: unexpected wire type {wire_type} in field {inner}"
                )));
            }
        }
    }
}

/// A field's key: its number and wire type. As prost, a key beyond 32 bits and field number
/// 0 are refused (the wire type is the caller's to check).
#[inline]
pub fn key(bytes: &mut &[u8]) -> Result<(u32, u8), WireError> {
    let key = varint(bytes)?;
    let number = u32::try_from(key)
        .ok()
        .map(|k| k >> 3)
        .filter(|n| *n != 0)
        .ok_or_else(|| WireError::Malformed(format!("field {}: invalid number", key >> 3)))?;
    Ok((number, (key & 7) as u8))
}

/// Skips `n` bytes, refusing a field that runs past the end.
pub fn advance(bytes: &mut &[u8], n: usize) -> Result<(), WireError> {
    if bytes.len() < n {
        return Err(WireError::Malformed("a field runs past the end".into()));
    }
    *bytes = &bytes[n..];
    Ok(())
}

/// Reads a varint off the front of `bytes`. Most are one byte (field keys, small lengths):
/// that case is inlined at every caller, the rest is not (the profile of native ingest had
/// this function at 15 % of its samples, out of line for every key).
#[inline]
pub fn varint(bytes: &mut &[u8]) -> Result<u64, WireError> {
    match bytes.split_first() {
        Some((&b, rest)) if b < 0x80 => {
            *bytes = rest;
            Ok(u64::from(b))
        }
        _ => long_varint(bytes),
    }
}

#[inline(never)]
fn long_varint(bytes: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0_u64;
    for i in 0..10 {
        let Some((&b, rest)) = bytes.split_first() else {
            return Err(WireError::Malformed("a varint runs past the end".into()));
        };
        *bytes = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // As prost: a tenth byte may only carry the 64th bit.
            if i == 9 && b > 1 {
                return Err(WireError::Malformed("a varint beyond 64 bits".into()));
            }
            return Ok(value);
        }
    }
    Err(WireError::Malformed("a varint longer than 10 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::varint;

    /// Varints of every length, as prost writes them, read back whole, with what follows
    /// left in place; a varint cut short or longer than 10 bytes is refused.
    #[test]
    fn varints_of_every_length_read_as_prost_writes_them() {
        let mut values = vec![0, 1, 0x7f, 0x80, 300, 0x3fff, 0x4000, u64::from(u32::MAX)];
        values.extend((1..64).map(|shift| 1_u64 << shift));
        values.extend((1..64).map(|shift| (1_u64 << shift) - 1));
        values.push(u64::MAX);
        for v in values {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(v, &mut buf);
            let len = buf.len();
            buf.push(0xaa);
            let mut bytes = &buf[..];
            assert_eq!(varint(&mut bytes).unwrap(), v, "{v}");
            assert_eq!(bytes, &[0xaa], "{v}: {len} bytes read");
            let mut cut = &buf[..len - 1];
            assert!(varint(&mut cut).is_err(), "{v} cut short");
        }
        let mut eleven = &[0xff_u8; 11][..];
        assert!(varint(&mut eleven).is_err());
    }

    #[test]
    fn a_tenth_byte_carries_only_the_64th_bit() {
        // As prost: u64::MAX ends in 0x01; a larger tenth byte overflows.
        let mut max = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..];
        assert_eq!(varint(&mut max).unwrap(), u64::MAX);
        let mut over = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..];
        assert!(varint(&mut over).is_err());
        assert!(
            prost::encoding::decode_varint(
                &mut &[
                    0xff_u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02
                ][..]
            )
            .is_err()
        );
    }
}
