//! Reading an ingest request body: with or without `Content-Length`
//! (chunked), compressed per `Content-Encoding` (`gzip`, `deflate`, `br`,
//! `identity`, or a comma-separated chain of them), and never more than the
//! limit (`[http] max_body_bytes`) — neither on the wire nor after
//! decompression, so a decompression bomb gets a `413` after at most
//! `limit + 1` bytes of output.
//!
//! Each body is counted in `tocsin_ingest_bodies_total{source,encoding}`.

use std::io::Read;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;

/// `413`: the body `what` (e.g. "is 5000 bytes") exceeds `limit`.
fn too_large(source: &'static str, what: &str, limit: usize) -> Response {
    metrics::counter!("tocsin_events_rejected_total", "source" => source).increment(1);
    super::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body {what}; the limit is {limit} bytes ([http] max_body_bytes)"),
    )
}

fn bad(source: &'static str, status: StatusCode, message: String) -> Response {
    metrics::counter!("tocsin_events_rejected_total", "source" => source).increment(1);
    super::error(status, message)
}

/// Reads and decodes the whole body, or the response refusing it.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    source: &'static str,
) -> Result<Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            if len <= (limit + DRAIN_CAP) as u64 {
                drain(body).await;
            }
            return Err(too_large(source, &format!("is {len} bytes"), limit));
        }
    }
    let raw = match collect(body, limit).await {
        Ok(raw) => raw,
        Err(Collect::TooLarge) => return Err(too_large(source, "is larger", limit)),
        Err(Collect::Failed(e)) => {
            return Err(bad(
                source,
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            ))
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let label = if encoding.is_empty() {
        "identity".to_string()
    } else {
        encoding.clone()
    };
    let decoded = decode(&encoding, raw, limit).map_err(|e| match e {
        DecodeError::TooLarge(coding) => too_large(
            source,
            &format!("is larger after {coding} decompression"),
            limit,
        ),
        DecodeError::Unsupported(coding) => bad(
            source,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {coding:?} (use gzip, deflate, br or identity)"),
        ),
        DecodeError::Corrupt(coding, reason) => bad(
            source,
            StatusCode::BAD_REQUEST,
            format!("request body is not valid {coding}: {reason}"),
        ),
    })?;
    metrics::counter!("tocsin_ingest_bodies_total", "source" => source, "encoding" => label)
        .increment(1);
    Ok(decoded)
}

/// Bytes read and discarded from a refused body, so that the client, still
/// sending, gets to read the `413` instead of a broken connection.
const DRAIN_CAP: usize = 16 << 20;
/// Time spent at most on draining.
const DRAIN_TIME: Duration = Duration::from_secs(5);

enum Collect {
    TooLarge,
    Failed(String),
}

/// The whole body, or `TooLarge` (after draining) past `limit` bytes.
async fn collect(mut body: Body, limit: usize) -> Result<Bytes, Collect> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Collect::Failed(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(Collect::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Reads and drops what is left of `body`, up to [`DRAIN_CAP`] bytes and
/// [`DRAIN_TIME`].
async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_CAP {
                    break;
                }
            }
        }
    })
    .await;
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The output exceeded the limit (the coding named).
    TooLarge(String),
    Unsupported(String),
    Corrupt(String, String),
}

/// Undoes `encoding` (a `Content-Encoding` value; codings are undone last
/// first), producing at most `limit` bytes.
pub fn decode(encoding: &str, raw: Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let mut data = raw;
    for coding in encoding
        .rsplit(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        let coding = coding.to_ascii_lowercase();
        data = match coding.as_str() {
            "identity" => data,
            "gzip" | "x-gzip" => {
                capped(flate2::read::MultiGzDecoder::new(&data[..]), limit, &coding)?
            }
            // HTTP's `deflate` is the zlib format, but some clients send raw
            // deflate; a zlib stream starts with a checked two-byte header.
            "deflate" if is_zlib(&data) => {
                capped(flate2::read::ZlibDecoder::new(&data[..]), limit, &coding)?
            }
            "deflate" => capped(flate2::read::DeflateDecoder::new(&data[..]), limit, &coding)?,
            "br" => capped(brotli::Decompressor::new(&data[..], 4096), limit, &coding)?,
            _ => return Err(DecodeError::Unsupported(coding)),
        };
    }
    Ok(data)
}

fn is_zlib(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Reads `reader` to the end, failing once it yields more than `limit`.
fn capped(reader: impl Read, limit: usize, coding: &str) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt(coding.to_string(), e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge(coding.to_string()));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    #[test]
    fn decodes_every_coding() {
        let text = b"hello tocsin".repeat(10);
        let g = Bytes::from(gzip(&text));
        assert_eq!(decode("gzip", g.clone(), 1000).expect("gzip"), text);
        assert_eq!(decode("x-gzip", g, 1000).expect("gzip"), text);

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).expect("zlib");
        let z = Bytes::from(z.finish().expect("zlib"));
        assert_eq!(decode("deflate", z, 1000).expect("zlib"), text);

        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(&text).expect("deflate");
        let d = Bytes::from(d.finish().expect("deflate"));
        assert_eq!(decode("deflate", d, 1000).expect("raw deflate"), text);

        let mut b = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut b, 4096, 5, 22);
            w.write_all(&text).expect("br");
        }
        assert_eq!(
            decode("br", Bytes::from(b.clone()), 1000).expect("br"),
            text
        );

        // A chain: gzip applied to a brotli body.
        let chained = Bytes::from(gzip(&b));
        assert_eq!(decode("br, gzip", chained, 1000).expect("chain"), text);
        assert_eq!(
            decode("", Bytes::from_static(b"x"), 10).expect("plain"),
            "x"
        );
    }

    #[test]
    fn refuses_bombs_unknown_codings_and_garbage() {
        let bomb = Bytes::from(gzip(&vec![0u8; 10 << 20]));
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        assert_eq!(
            decode("gzip", bomb, 1 << 20),
            Err(DecodeError::TooLarge("gzip".into()))
        );
        assert_eq!(
            decode("zstd", Bytes::from_static(b"x"), 10),
            Err(DecodeError::Unsupported("zstd".into()))
        );
        assert!(matches!(
            decode("gzip", Bytes::from_static(b"not gzip"), 10),
            Err(DecodeError::Corrupt(..))
        ));
    }
}
