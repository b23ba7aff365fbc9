//! The one message of a unary gRPC call, read from the body by us before tonic's codec sees
//! it: its length checked against `ingest.max_request_bytes` as soon as the 5-byte prefix
//! arrives, and a gzip message inflated here, bounded by the same limit. Tonic reports these
//! failures only as message text (and some as INTERNAL or RESOURCE_EXHAUSTED, which clients
//! retry); reading the frame ourselves makes each one a [`FrameError`] variant, which
//! `error.rs` maps to INVALID_ARGUMENT and the rejection counter like any other error.
//!
//! What tonic gets is the same message as one uncompressed frame, so its own limit and
//! decompression never come into play.

use std::io::Read as _;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;

/// Bytes before a gRPC message: a compressed flag and the message length (big-endian u32).
const PREFIX: usize = 5;

/// Why a request body is not one acceptable gRPC message.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The message on the wire is longer than the limit (refused before it is read).
    #[error(
        "request too large (ingest.max_request_bytes): the message is {bytes} bytes, \
         more than the limit of {limit}"
    )]
    TooLarge { bytes: usize, limit: usize },
    /// A compressed message that inflates past the limit (a gzip bomb, or just too much).
    #[error(
        "request too large once decompressed (ingest.max_request_bytes): more than {limit} bytes"
    )]
    InflatesTooLarge { limit: usize },
    /// The compressed flag is set and the gzip stream is corrupt.
    #[error("request body could not be decompressed: {0}")]
    Decompress(std::io::Error),
    /// The compressed flag is set with an encoding ingest does not take.
    #[error("request body is compressed with {0:?}, which ingest does not accept (gzip or none)")]
    Encoding(String),
    /// The body is not exactly one length-prefixed message.
    #[error("request body is not one gRPC message: {0}")]
    Malformed(&'static str),
    /// The body could not be read (the client went away or reset the stream).
    #[error("request body could not be read: {0}")]
    Body(String),
}

/// Reads the single message of a unary call from `body` and returns it as one uncompressed
/// gRPC frame. `encoding` is the request's `grpc-encoding` header, if any.
pub async fn read_message<B>(
    body: B,
    encoding: Option<&[u8]>,
    limit: usize,
) -> Result<Bytes, FrameError>
where
    B: http_body::Body,
    B::Data: bytes::Buf,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    let mut declared = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FrameError::Body(e.to_string()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers: a unary request has none that matter here
        };
        while bytes::Buf::has_remaining(&data) {
            let chunk = bytes::Buf::chunk(&data);
            buf.extend_from_slice(chunk);
            let n = chunk.len();
            bytes::Buf::advance(&mut data, n);
        }
        if declared.is_none() && buf.len() >= PREFIX {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > limit {
                return Err(FrameError::TooLarge { bytes: len, limit });
            }
            // One allocation of the declared size, not a doubling past it.
            buf.reserve((PREFIX + len).saturating_sub(buf.len()));
            declared = Some(len);
        }
        if let Some(len) = declared
            && buf.len() > PREFIX + len
        {
            return Err(FrameError::Malformed("bytes after the message"));
        }
    }
    let Some(len) = declared else {
        return Err(FrameError::Malformed(if buf.is_empty() {
            "no message"
        } else {
            "a truncated length prefix"
        }));
    };
    if buf.len() < PREFIX + len {
        return Err(FrameError::Malformed("a truncated message"));
    }
    match buf[0] {
        0 => Ok(buf.freeze()),
        1 => {
            match encoding {
                Some(b"gzip") => {}
                Some(other) => {
                    return Err(FrameError::Encoding(
                        String::from_utf8_lossy(other).into_owned(),
                    ));
                }
                None => return Err(FrameError::Encoding("(no grpc-encoding header)".into())),
            }
            inflate(&buf[PREFIX..], limit)
        }
        _ => Err(FrameError::Malformed("a compressed flag other than 0 or 1")),
    }
}

/// Inflates a gzip message into an uncompressed frame, reading at most `limit + 1` bytes.
/// The output grows by doubling but never past `PREFIX + limit + 1`, so a message at the
/// limit takes about the limit, not twice it.
fn inflate(gzip: &[u8], limit: usize) -> Result<Bytes, FrameError> {
    inflate_to_vec(gzip, limit).map(Bytes::from)
}

fn inflate_to_vec(gzip: &[u8], limit: usize) -> Result<Vec<u8>, FrameError> {
    let cap = PREFIX + limit + 1;
    // A Vec, whose `reserve_exact` keeps to what is asked (BytesMut's doubles).
    let mut out = Vec::with_capacity(PREFIX + gzip.len().saturating_mul(4).min(limit));
    out.extend_from_slice(&[0; PREFIX]);
    let mut decoder = flate2::read::GzDecoder::new(gzip).take(limit as u64 + 1);
    let mut chunk = [0_u8; 64 * 1024];
    loop {
        let n = decoder.read(&mut chunk).map_err(FrameError::Decompress)?;
        if n == 0 {
            break;
        }
        if out.capacity() - out.len() < n {
            let want = (out.capacity() * 2).max(out.len() + n).min(cap);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    let inflated = out.len() - PREFIX;
    if inflated > limit {
        return Err(FrameError::InflatesTooLarge { limit });
    }
    let len = u32::try_from(inflated).map_err(|_| FrameError::InflatesTooLarge { limit })?;
    out[1..PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use http_body_util::{Full, StreamBody};
    use std::io::Write as _;

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    async fn read(
        body: Vec<u8>,
        encoding: Option<&[u8]>,
        limit: usize,
    ) -> Result<Bytes, FrameError> {
        read_message(Full::new(Bytes::from(body)), encoding, limit).await
    }

    /// What a client is answered for each failure: final refusals are INVALID_ARGUMENT, an
    /// encoding ingest does not take is UNIMPLEMENTED (as gRPC says), a client that went
    /// away is CANCELLED.
    #[test]
    fn each_failure_has_its_status_code() {
        use tonic::{Code, Status};
        let code = |e: FrameError| Status::from(crate::Error::Frame(e)).code();
        assert_eq!(
            code(FrameError::TooLarge { bytes: 2, limit: 1 }),
            Code::InvalidArgument
        );
        assert_eq!(
            code(FrameError::InflatesTooLarge { limit: 1 }),
            Code::InvalidArgument
        );
        assert_eq!(
            code(FrameError::Malformed("no message")),
            Code::InvalidArgument
        );
        assert_eq!(
            code(FrameError::Encoding("zstd".into())),
            Code::Unimplemented
        );
        assert_eq!(code(FrameError::Body("reset".into())), Code::Cancelled);
    }

    #[test]
    fn inflating_a_message_at_the_limit_allocates_about_the_limit() {
        // 1 MiB of zeros is ~1 KB of gzip: the output starts at 4 KB and grows. Doubling
        // alone would end at 2 MiB for the 1 MiB + 5 bytes it holds.
        let limit = 1 << 20;
        let out = inflate_to_vec(&gzip(&vec![0_u8; limit]), limit).unwrap();
        assert_eq!(out.len(), PREFIX + limit);
        assert!(
            out.capacity() <= PREFIX + limit + 1,
            "capacity {} for {} bytes",
            out.capacity(),
            out.len()
        );
    }

    #[tokio::test]
    async fn a_plain_message_passes_through_unchanged() {
        let f = framed(0, b"hello");
        assert_eq!(read(f.clone(), None, 100).await.unwrap(), f);
    }

    #[tokio::test]
    async fn a_gzip_message_becomes_the_same_message_uncompressed() {
        let message = b"nines ".repeat(1_000);
        let got = read(framed(1, &gzip(&message)), Some(b"gzip"), 10_000)
            .await
            .unwrap();
        assert_eq!(got, framed(0, &message));
    }

    #[tokio::test]
    async fn a_message_split_over_many_body_frames_is_whole() {
        let f = framed(0, &[7_u8; 1_000]);
        let chunks: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = f
            .chunks(3)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(futures::stream::iter(chunks));
        assert_eq!(read_message(body, None, 1_000).await.unwrap(), f);
    }

    #[tokio::test]
    async fn each_failure_is_its_own_variant() {
        // Longer than the limit: refused on the prefix.
        let e = read(framed(0, &[0; 101]), None, 100).await.unwrap_err();
        assert!(
            matches!(
                e,
                FrameError::TooLarge {
                    bytes: 101,
                    limit: 100
                }
            ),
            "{e:?}"
        );
        // A gzip bomb: 2 MiB of zeros in a few KB, against a 1 MiB limit.
        let bomb = gzip(&vec![0_u8; 2 << 20]);
        assert!(bomb.len() < 10_000, "{} bytes", bomb.len());
        let e = read(framed(1, &bomb), Some(b"gzip"), 1 << 20)
            .await
            .unwrap_err();
        assert!(
            matches!(e, FrameError::InflatesTooLarge { limit } if limit == 1 << 20),
            "{e:?}"
        );
        // Exactly at the limit is accepted.
        let at = gzip(&vec![0_u8; 1 << 20]);
        let ok = read(framed(1, &at), Some(b"gzip"), 1 << 20).await.unwrap();
        assert_eq!(ok.len(), PREFIX + (1 << 20));
        // A gzip header, then garbage.
        let corrupt = [
            0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 0xde, 0xad, 0xbe, 0xef,
        ];
        let e = read(framed(1, &corrupt), Some(b"gzip"), 100)
            .await
            .unwrap_err();
        assert!(matches!(e, FrameError::Decompress(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("request body could not be decompressed: ")
        );
        // Compressed with something else, or with no encoding named.
        let e = read(framed(1, b"x"), Some(b"zstd"), 100).await.unwrap_err();
        assert!(
            matches!(&e, FrameError::Encoding(s) if s == "zstd"),
            "{e:?}"
        );
        let e = read(framed(1, b"x"), None, 100).await.unwrap_err();
        assert!(matches!(e, FrameError::Encoding(_)), "{e:?}");
        // Not one message.
        for (body, what) in [
            (vec![], "no message"),
            (vec![0, 0, 0], "a truncated length prefix"),
            (framed(0, b"abc")[..6].to_vec(), "a truncated message"),
            (
                [framed(0, b"a"), framed(0, b"b")].concat(),
                "bytes after the message",
            ),
            (framed(2, b"a"), "a compressed flag other than 0 or 1"),
        ] {
            let e = read(body, None, 100).await.unwrap_err();
            assert!(
                matches!(e, FrameError::Malformed(w) if w == what),
                "{what}: {e:?}"
            );
        }
    }
}
