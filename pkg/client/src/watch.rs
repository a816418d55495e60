//! Reading a watch response: newline-delimited JSON events out of arbitrary HTTP chunks.
//!
//! The apiserver streams one JSON event per line (`{"type":"ADDED","object":{...}}\n`), but the
//! network cuts the stream wherever it likes: one chunk may hold several events, or a fraction
//! of one. [`LineFramer`] reassembles lines; [`event_stream`] decodes each into a
//! [`WatchEvent`].
//!
//! What this keeps true:
//! - every complete line becomes exactly one item, in order; blank lines are skipped;
//! - a line that does not decode yields `Err(Error::Decode)` and the stream goes on with the next
//!   line (one bad object does not end a watch);
//! - `ERROR` events (such as 410 `Expired`) arrive as [`WatchEvent::Error`], not as `Err`;
//! - a last line without a trailing newline is still decoded when the server ends the stream;
//! - a transport failure mid-stream yields one `Err` and ends the stream (what was cut off
//!   is dropped).

use std::collections::VecDeque;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kube_core::watch::WatchEvent;
use serde::de::DeserializeOwned;

use crate::api::WatchStream;
use crate::client::snippet;
use crate::error::{Error, Result};

/// Splits a byte stream into lines; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct LineFramer {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no newline, so a long line arriving in many small
    /// chunks is scanned once, not once per chunk.
    scanned: usize,
}

impl LineFramer {
    /// Adds a chunk and returns the lines it completed (without their newline), blank lines
    /// left out.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.buffer.extend_from_slice(chunk);
        let mut lines = Vec::new();
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(offset) = self.buffer[from..].iter().position(|&b| b == b'\n') {
            let end = from + offset;
            let line = self.buffer[start..end].trim_ascii();
            if !line.is_empty() {
                lines.push(line.to_vec());
            }
            start = end + 1;
            from = start;
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
        lines
    }

    /// What is left once the stream ended: a last line without a newline, if not blank.
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buffer);
        self.scanned = 0;
        let rest = rest.trim_ascii();
        (!rest.is_empty()).then(|| rest.to_vec())
    }
}

/// Decodes one event line.
pub(crate) fn decode_event<K: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<K>> {
    serde_json::from_slice(line).map_err(|e| Error::Decode(format!("watch event: {e}; line starts: {}", snippet(line))))
}

struct State<S> {
    body: S,
    framer: LineFramer,
    ready: VecDeque<Vec<u8>>,
    ended: bool,
}

/// Turns a watch response body into a stream of events; see the module docs.
pub(crate) fn event_stream<K, S>(body: S) -> WatchStream<K>
where
    K: DeserializeOwned + Send + 'static,
    S: Stream<Item = Result<Bytes>> + Send + Unpin + 'static,
{
    let state = State { body, framer: LineFramer::default(), ready: VecDeque::new(), ended: false };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(line) = state.ready.pop_front() {
                let event = decode_event::<K>(&line);
                return Some((event, state));
            }
            if state.ended {
                return None;
            }
            match state.body.next().await {
                Some(Ok(chunk)) => state.ready.extend(state.framer.push(&chunk)),
                Some(Err(e)) => {
                    state.ended = true;
                    return Some((Err(e), state));
                }
                None => {
                    state.ended = true;
                    state.ready.extend(state.framer.finish());
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube_core::ResourceExt;

    fn cm_event(kind: &str, name: &str, rv: &str) -> String {
        format!(
            r#"{{"type":"{kind}","object":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"default","resourceVersion":"{rv}"}}}}}}"#
        )
    }

    fn chunks_of(text: &str, size: usize) -> Vec<Result<Bytes>> {
        text.as_bytes().chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect()
    }

    async fn collect(chunks: Vec<Result<Bytes>>) -> Vec<Result<WatchEvent<ConfigMap>>> {
        event_stream::<ConfigMap, _>(futures::stream::iter(chunks)).collect().await
    }

    fn names(events: &[Result<WatchEvent<ConfigMap>>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Ok(WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)) => o.name_any(),
                Ok(WatchEvent::Bookmark(b)) => format!("bookmark@{}", b.metadata.resource_version),
                Ok(WatchEvent::Error(s)) => format!("error {}", s.code),
                Err(e) => format!("err {e}"),
            })
            .collect()
    }

    #[test]
    fn the_framer_splits_several_lines_in_one_chunk_and_skips_blanks() {
        let mut framer = LineFramer::default();
        let lines = framer.push(b"a\n\n  \nbb\r\nc");
        assert_eq!(lines, [b"a".to_vec(), b"bb".to_vec()]);
        assert_eq!(framer.push(b"cc"), Vec::<Vec<u8>>::new());
        assert_eq!(framer.push(b"\n"), [b"ccc".to_vec()]);
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn the_framer_reassembles_a_line_cut_into_single_bytes() {
        let mut framer = LineFramer::default();
        let mut lines = Vec::new();
        for byte in b"hello\nworld\n" {
            lines.extend(framer.push(&[*byte]));
        }
        assert_eq!(lines, [b"hello".to_vec(), b"world".to_vec()]);
    }

    #[tokio::test]
    async fn events_split_across_chunks_arrive_whole_and_in_order() {
        let text = format!(
            "{}\n{}\n{}\n",
            cm_event("ADDED", "a", "5"),
            cm_event("MODIFIED", "b", "6"),
            cm_event("DELETED", "c", "7")
        );
        for size in [1, 3, 7, 50, 1000] {
            let events = collect(chunks_of(&text, size)).await;
            assert_eq!(names(&events), ["a", "b", "c"], "chunk size {size}");
        }
        let events = collect(chunks_of(&text, 1000)).await;
        assert!(matches!(&events[1], Ok(WatchEvent::Modified(_))));
        assert!(matches!(&events[2], Ok(WatchEvent::Deleted(_))));
    }

    #[tokio::test]
    async fn a_bad_line_is_an_error_and_the_stream_goes_on() {
        let text = format!(
            "{}\nnot json\n{{\"type\":\"WHAT\",\"object\":{{}}}}\n{}\n",
            cm_event("ADDED", "a", "5"),
            cm_event("ADDED", "b", "6")
        );
        let events = collect(chunks_of(&text, 10)).await;
        assert_eq!(events.len(), 4);
        assert!(matches!(&events[1], Err(Error::Decode(m)) if m.contains("not json")));
        assert!(matches!(&events[2], Err(Error::Decode(_))));
        assert_eq!(names(&events)[3], "b");
    }

    #[tokio::test]
    async fn error_events_and_bookmarks_are_events() {
        let text = concat!(
            r#"{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"42"}}}"#,
            "\n",
            r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (40)","reason":"Expired","code":410}}"#,
            "\n"
        );
        let events = collect(chunks_of(text, 16)).await;
        assert_eq!(names(&events), ["bookmark@42", "error 410"]);
        assert!(matches!(&events[1], Ok(WatchEvent::Error(s)) if s.reason == "Expired"));
    }

    #[tokio::test]
    async fn a_last_line_without_newline_is_decoded() {
        let events = collect(chunks_of(&cm_event("ADDED", "last", "9"), 4)).await;
        assert_eq!(names(&events), ["last"]);
    }

    #[tokio::test]
    async fn a_transport_error_ends_the_stream_after_one_err() {
        let mut chunks = chunks_of(&format!("{}\n{{\"partial", cm_event("ADDED", "a", "5")), 1000);
        chunks.push(Err(Error::Unavailable("connection reset".into())));
        chunks.push(Ok(Bytes::from_static(b"never read\n")));
        let events = collect(chunks).await;
        assert_eq!(names(&events), ["a", "err unavailable: connection reset"]);
    }
}
