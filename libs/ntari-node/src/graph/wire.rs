//! Payload encoding: a 4-byte encapsulation header, then plain CDR (XCDR1).

use byteorder::{BigEndian, LittleEndian};
use serde::{de::DeserializeOwned, Serialize};

/// The header we write: CDR little-endian, no options.
pub const CDR_LE: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payload of {0} bytes is too short for a CDR encapsulation header")]
    Truncated(usize),
    #[error("unsupported encapsulation 0x{0:04x} (only XCDR1 CDR_LE 0x0001 / CDR_BE 0x0000 are accepted)")]
    Encapsulation(u16),
    #[error("malformed CDR: {0}")]
    Cdr(String),
}

/// Serialises `value` with the CDR_LE header in front.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let body = cdr_encoding::to_vec::<T, LittleEndian>(value)
        .map_err(|e| WireError::Cdr(e.to_string()))?;
    let mut out = Vec::with_capacity(CDR_LE.len() + body.len());
    out.extend_from_slice(&CDR_LE);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a payload written by any ROS 2 / DDS peer in XCDR1.
///
/// Trailing bytes are ignored: CDR writers may pad to a 4-byte boundary.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    if payload.len() < CDR_LE.len() {
        return Err(WireError::Truncated(payload.len()));
    }
    let kind = u16::from_be_bytes([payload[0], payload[1]]);
    let body = &payload[CDR_LE.len()..];
    let decoded = match kind {
        0x0001 => cdr_encoding::from_bytes::<T, LittleEndian>(body),
        0x0000 => cdr_encoding::from_bytes::<T, BigEndian>(body),
        other => return Err(WireError::Encapsulation(other)),
    };
    decoded
        .map(|(v, _)| v)
        .map_err(|e| WireError::Cdr(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Sample {
        flag: bool,
        stamp: u64,
        text: String,
    }

    #[test]
    fn round_trip_with_header_and_alignment() {
        let s = Sample {
            flag: true,
            stamp: 7,
            text: "hi".into(),
        };
        let bytes = encode(&s).unwrap();
        // header, bool, 7 bytes padding to align u64 (relative to the body), u64, len 3, "hi\0"
        assert_eq!(
            bytes,
            [
                0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, b'h', b'i',
                0
            ]
        );
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
    }

    #[test]
    fn big_endian_payloads_are_read() {
        let bytes = [
            0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0,
        ];
        let s: Sample = decode(&bytes).unwrap();
        assert_eq!(s.stamp, 9);
        assert_eq!(s.text, "");
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        assert_eq!(decode::<Sample>(&[0, 1]), Err(WireError::Truncated(2)));
        assert_eq!(
            decode::<Sample>(&[0, 7, 0, 0, 1]),
            Err(WireError::Encapsulation(7))
        );
        assert!(matches!(
            decode::<Sample>(&[0, 1, 0, 0, 1]),
            Err(WireError::Cdr(_))
        ));
        // A string length far beyond the payload must fail without allocating it.
        let huge = [
            0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f,
            b'x',
        ];
        assert!(matches!(decode::<Sample>(&huge), Err(WireError::Cdr(_))));
        // So must a sequence claiming billions of elements.
        let seq = [0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Vec<u64>>(&seq).is_err());
    }
}
