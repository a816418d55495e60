//! SPDY/3.1 framing, the multiplexing protocol Kubernetes' port forwarding still speaks.
//!
//! `kubectl port-forward` (1.31 and later) opens a WebSocket with the subprotocol
//! `SPDY/3.1+portforward.k8s.io` and runs a SPDY/3.1 connection inside it: the WebSocket's binary
//! messages are nothing but a byte stream carrying SPDY frames (message boundaries mean
//! nothing). Every forwarded TCP connection is a pair of SPDY streams the client opens; see
//! [`crate::portforward`].
//!
//! A frame is 8 bytes of header and a payload. A control frame's first bit is 1, followed by
//! the version (3) and its type (`SYN_STREAM` 1, `SYN_REPLY` 2, `RST_STREAM` 3, `SETTINGS` 4,
//! `PING` 6, `GOAWAY` 7, `HEADERS` 8, `WINDOW_UPDATE` 9); a data frame's first bit is 0,
//! followed by its stream id. Then one byte of flags (`FIN` = 1) and 24 bits of length. Header
//! blocks (in `SYN_STREAM`, `SYN_REPLY` and `HEADERS`) are name/value pairs compressed with
//! zlib, one compression stream per direction for the whole connection, primed with the
//! protocol's [dictionary](DICTIONARY) and flushed (sync) at the end of every block: so every
//! header block must be inflated in order, even those nobody reads.
//!
//! Only what Kubernetes' streams use is modelled: no server push, no priorities, no flow
//! control (the Go implementation kubectl uses, moby/spdystream, sends no `WINDOW_UPDATE` and
//! ignores those it gets).

use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The prefix kubectl puts before a streaming protocol to tunnel SPDY in a WebSocket.
pub const TUNNEL_PREFIX: &str = "SPDY/3.1+";

/// The largest data frame payload sent (the format allows 16 MiB).
pub const MAX_DATA: usize = 32 * 1024;

/// The largest inflated header block accepted (a bound on what a peer can make us allocate).
const MAX_HEADER_BLOCK: usize = 256 * 1024;

const VERSION: u16 = 3;
const FLAG_FIN: u8 = 0x01;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;

/// `RST_STREAM` status: the stream broke the protocol (e.g. headers missing).
pub const PROTOCOL_ERROR: u32 = 1;

/// Name/value pairs of a header block, names lower case, as sent.
pub type Headers = Vec<(String, String)>;

/// One SPDY frame, as far as Kubernetes' streams need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The peer opens a stream; `fin`: it will send nothing on it.
    SynStream {
        /// Odd for streams the client opens.
        stream_id: u32,
        /// The stream's headers (for port forwarding `streamtype`, `port`, `requestid`).
        headers: Headers,
        /// Half-closed from the start.
        fin: bool,
    },
    /// The answer to a `SYN_STREAM`: the stream is accepted.
    SynReply {
        /// The stream answered.
        stream_id: u32,
        /// Headers of the reply (none for Kubernetes).
        headers: Headers,
        /// Nothing will be sent on it.
        fin: bool,
    },
    /// A stream ends abruptly.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (1 protocol error, 5 cancel, ...).
        status: u32,
    },
    /// A liveness check; answered with the same id.
    Ping(u32),
    /// The sender closes the connection.
    GoAway {
        /// The last stream it handled.
        last_good_stream_id: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// Bytes of a stream; `fin`: the sender's last.
    Data {
        /// The stream.
        stream_id: u32,
        /// The sender's half of the stream ends here.
        fin: bool,
        /// The payload.
        data: Bytes,
    },
    /// A frame without meaning here (`SETTINGS`, `HEADERS`, `WINDOW_UPDATE`, unknown types),
    /// with its type.
    Other(u16),
}

/// Why a byte stream is not SPDY/3.1.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A frame does not follow the format.
    #[error("malformed SPDY frame: {0}")]
    Malformed(String),
    /// A header block does not inflate.
    #[error("SPDY header block: {0}")]
    Header(String),
}

/// The zlib dictionary of SPDY/3 header compression (the SPDY/3 draft, section 2.6.10.1):
/// these names, each after its length as 4 bytes big-endian, then [`DICTIONARY_TAIL`].
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's last part: status codes, reasons, dates and common values, as one string.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 header compression dictionary (1,423 bytes).
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut dictionary = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        dictionary.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(word.as_bytes());
    }
    dictionary.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dictionary
});

/// Reads frames from the bytes of one direction of a connection, in order.
pub struct Decoder {
    buffer: BytesMut,
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { buffer: BytesMut::new(), inflate: Decompress::new(true) }
    }
}

impl Decoder {
    /// Adds bytes as they came (any split: a WebSocket message may hold part of a frame or
    /// several).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, or `None` until more bytes have come.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if self.buffer.len() < 8 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, self.buffer[5], self.buffer[6], self.buffer[7]]) as usize;
        if self.buffer.len() < 8 + length {
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(8 + length).freeze();
        let first = frame.get_u32();
        let flags_and_length = frame.get_u32();
        let fin = (flags_and_length >> 24) as u8 & FLAG_FIN != 0;
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data { stream_id: first & 0x7fff_ffff, fin, data: frame }));
        }
        let version = (first >> 16) as u16 & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Malformed(format!("version {version}, only SPDY/3.1 is spoken")));
        }
        let kind = first as u16;
        let need = |n: usize| {
            if frame.len() < n {
                Err(SpdyError::Malformed(format!("control frame {kind} of {} bytes, needs {n}", frame.len())))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            SYN_STREAM => {
                need(10)?;
                let stream_id = frame.get_u32() & 0x7fff_ffff;
                frame.advance(6); // the associated stream, priority and slot: unused
                Frame::SynStream { stream_id, headers: self.headers(&frame)?, fin }
            }
            SYN_REPLY | HEADERS => {
                need(4)?;
                let stream_id = frame.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&frame)?;
                if kind == HEADERS { Frame::Other(HEADERS) } else { Frame::SynReply { stream_id, headers, fin } }
            }
            RST_STREAM => {
                need(8)?;
                Frame::RstStream { stream_id: frame.get_u32() & 0x7fff_ffff, status: frame.get_u32() }
            }
            PING => {
                need(4)?;
                Frame::Ping(frame.get_u32())
            }
            GOAWAY => {
                need(8)?;
                Frame::GoAway { last_good_stream_id: frame.get_u32() & 0x7fff_ffff, status: frame.get_u32() }
            }
            other => Frame::Other(other),
        }))
    }

    /// Inflates one header block (the connection's zlib stream goes on) and reads its pairs.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut block = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut input = compressed;
        loop {
            let before = self.inflate.total_in();
            let status = self.inflate.decompress_vec(input, &mut block, FlushDecompress::Sync);
            input = &input[usize::try_from(self.inflate.total_in() - before).unwrap_or(input.len())..];
            match status {
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&DICTIONARY).map_err(|e| SpdyError::Header(e.to_string()))?;
                }
                Err(error) => return Err(SpdyError::Header(error.to_string())),
                Ok(_) if input.is_empty() && block.len() < block.capacity() => break,
                Ok(_) if block.len() >= MAX_HEADER_BLOCK => {
                    return Err(SpdyError::Header(format!("larger than {MAX_HEADER_BLOCK} bytes")));
                }
                Ok(_) => block.reserve(block.capacity().max(256)),
            }
        }
        parse_header_block(&block)
    }
}

/// Reads `count`, then `count` × (name length, name, value length, value), all lengths 4 bytes
/// big-endian.
fn parse_header_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    fn take<'a>(block: &mut &'a [u8], n: usize) -> Result<&'a [u8], SpdyError> {
        if block.len() < n {
            return Err(SpdyError::Header("truncated name/value block".into()));
        }
        let (head, rest) = block.split_at(n);
        *block = rest;
        Ok(head)
    }
    fn string(block: &mut &[u8]) -> Result<String, SpdyError> {
        let length = be_u32(take(block, 4)?) as usize;
        String::from_utf8(take(block, length)?.to_vec()).map_err(|_| SpdyError::Header("a header is not UTF-8".into()))
    }
    let count = be_u32(take(&mut block, 4)?);
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = string(&mut block)?.to_ascii_lowercase();
        headers.push((name, string(&mut block)?));
    }
    Ok(headers)
}

/// The first 4 bytes of `bytes` (which has at least 4) as a big-endian number.
fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Writes frames for one direction of a connection, in order.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // A fresh compressor takes a dictionary; this cannot fail.
        let _ = deflate.set_dictionary(&DICTIONARY);
        Encoder { deflate }
    }
}

impl Encoder {
    /// The bytes of `frame`. Headers are compressed, so frames must be sent in the order they
    /// were encoded.
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::new();
        match frame {
            Frame::Data { stream_id, fin, data } => {
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(flags_and_length(*fin, data.len())?);
                out.extend_from_slice(data);
            }
            Frame::SynStream { stream_id, headers, fin } => {
                let mut payload = Vec::new();
                payload.put_u32(*stream_id);
                payload.put_u32(0);
                payload.put_u16(0);
                payload.extend(self.compress(headers)?);
                control(&mut out, SYN_STREAM, *fin, &payload)?;
            }
            Frame::SynReply { stream_id, headers, fin } => {
                let mut payload = Vec::new();
                payload.put_u32(*stream_id);
                payload.extend(self.compress(headers)?);
                control(&mut out, SYN_REPLY, *fin, &payload)?;
            }
            Frame::RstStream { stream_id, status } => {
                control(&mut out, RST_STREAM, false, &[stream_id.to_be_bytes(), status.to_be_bytes()].concat())?;
            }
            Frame::Ping(id) => control(&mut out, PING, false, &id.to_be_bytes())?,
            Frame::GoAway { last_good_stream_id, status } => {
                let payload = [last_good_stream_id.to_be_bytes(), status.to_be_bytes()].concat();
                control(&mut out, GOAWAY, false, &payload)?;
            }
            Frame::Other(kind) => return Err(SpdyError::Malformed(format!("cannot encode frame type {kind}"))),
        }
        Ok(out)
    }

    /// The header block of `headers`, compressed and sync-flushed.
    fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut block = Vec::new();
        block.put_u32(headers.len() as u32);
        for (name, value) in headers {
            block.put_u32(name.len() as u32);
            block.extend_from_slice(name.as_bytes());
            block.put_u32(value.len() as u32);
            block.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = &block[..];
        loop {
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|error| SpdyError::Header(error.to_string()))?;
            input = &input[usize::try_from(self.deflate.total_in() - before).unwrap_or(input.len())..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(256));
        }
    }
}

/// The second word of a frame: flags and a 24-bit length.
fn flags_and_length(fin: bool, length: usize) -> Result<u32, SpdyError> {
    if length >= 1 << 24 {
        return Err(SpdyError::Malformed(format!("a frame of {length} bytes is larger than 16 MiB")));
    }
    Ok((u32::from(if fin { FLAG_FIN } else { 0 }) << 24) | length as u32)
}

fn control(out: &mut Vec<u8>, kind: u16, fin: bool, payload: &[u8]) -> Result<(), SpdyError> {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32(flags_and_length(fin, payload.len())?);
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn the_dictionary_is_the_protocols() {
        // zlib names a dictionary by its Adler-32; kubectl's header blocks carry this one.
        let mut inflate = Decompress::new(true);
        let mut encoder = Encoder::default();
        let block = encoder.compress(&headers(&[("port", "80")])).expect("compressed");
        let error = inflate.decompress_vec(&block, &mut Vec::with_capacity(64), FlushDecompress::Sync).unwrap_err();
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(error.needs_dictionary(), Some(0xe3c6_a7c2));
    }

    #[test]
    fn frames_round_trip_whatever_the_split() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                headers: headers(&[("streamtype", "error"), ("port", "8080"), ("requestid", "0")]),
                fin: false,
            },
            Frame::SynStream {
                stream_id: 3,
                headers: headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
                fin: false,
            },
            Frame::SynReply { stream_id: 1, headers: Vec::new(), fin: false },
            Frame::Data { stream_id: 3, fin: false, data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n") },
            Frame::Data { stream_id: 1, fin: true, data: Bytes::new() },
            Frame::Ping(1),
            Frame::RstStream { stream_id: 3, status: 5 },
            Frame::GoAway { last_good_stream_id: 3, status: 0 },
        ];
        let mut encoder = Encoder::default();
        let bytes: Vec<u8> = frames.iter().flat_map(|frame| encoder.encode(frame).expect("encoded")).collect();
        for split in [1, 3, 7, 1000] {
            let mut decoder = Decoder::default();
            let mut decoded = Vec::new();
            for chunk in bytes.chunks(split) {
                decoder.extend(chunk);
                while let Some(frame) = decoder.next_frame().expect("decoded") {
                    decoded.push(frame);
                }
            }
            assert_eq!(decoded, frames, "split into chunks of {split}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut decoder = Decoder::default();
        decoder.extend(&[0x80, 0x02, 0, 1, 0, 0, 0, 0]);
        assert!(matches!(decoder.next_frame(), Err(SpdyError::Malformed(_))));
        let mut decoder = Decoder::default();
        decoder.extend(&[0x80, 0x03, 0, 1, 0, 0, 0, 2, 0, 0]);
        assert!(matches!(decoder.next_frame(), Err(SpdyError::Malformed(_))));
        let mut decoder = Decoder::default();
        decoder.extend(&[0x80, 0x03, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        assert!(matches!(decoder.next_frame(), Err(SpdyError::Header(_))));
    }
}
