//! Response bodies assembled from shared object bytes.
//!
//! A list or a watch sends each object's cached JSON ([`crate::stored::StoredObject`]) with a
//! few bytes of punctuation around it. Handing every piece to the connection as its own
//! chunk costs an HTTP chunk header and a read on the client per piece: a list of 50,000
//! objects was 100,000 chunks. [`Frames`] copies small pieces together into frames of about
//! [`FRAME`] bytes and passes a large object's bytes on as they are, so a big object is still
//! never copied per client.

use bytes::{Bytes, BytesMut};

/// About how large a frame of small pieces grows before it is sent.
pub const FRAME: usize = 32 * 1024;

/// Pieces at least this large are sent as they are, not copied into a frame.
pub const SHARE_FROM: usize = 16 * 1024;

/// A body being assembled: finished frames, and the one being filled.
#[derive(Debug, Default)]
pub struct Frames {
    done: Vec<Bytes>,
    open: BytesMut,
}

impl Frames {
    /// An empty body.
    pub fn new() -> Self {
        Frames::default()
    }

    /// Appends bytes that are copied (punctuation, a small head).
    pub fn extend(&mut self, piece: &[u8]) {
        if self.open.is_empty() && !self.done.is_empty() {
            // A large body: make room for a whole frame at once rather than growing into it.
            self.open.reserve(FRAME + SHARE_FROM);
        }
        self.open.extend_from_slice(piece);
        if self.open.len() >= FRAME {
            self.flush();
        }
    }

    /// Appends shared bytes: copied when small, passed on as they are when large.
    pub fn push(&mut self, piece: &Bytes) {
        match piece.len() >= SHARE_FROM {
            true => {
                self.flush();
                self.done.push(piece.clone());
            }
            false => self.extend(piece),
        }
    }

    fn flush(&mut self) {
        if !self.open.is_empty() {
            self.done.push(self.open.split().freeze());
        }
    }

    /// The body's chunks, in order.
    pub fn finish(mut self) -> Vec<Bytes> {
        self.flush();
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_share_frames_and_large_ones_are_passed_on_without_a_copy() {
        let small = Bytes::from(vec![b's'; 1000]);
        let large = Bytes::from(vec![b'l'; SHARE_FROM]);
        let mut frames = Frames::new();
        for _ in 0..100 {
            frames.extend(b",");
            frames.push(&small);
        }
        frames.push(&large);
        frames.extend(b"]}");
        let chunks = frames.finish();
        let body: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.iter().copied()).collect();
        let expected: Vec<u8> = [b",".to_vec(), vec![b's'; 1000]]
            .concat()
            .repeat(100)
            .into_iter()
            .chain(vec![b'l'; SHARE_FROM])
            .chain(*b"]}")
            .collect();
        assert_eq!(body, expected, "the bytes, in order");
        // 100 KB of small pieces in frames of about 32 KiB, then the large one, then the tail.
        assert_eq!(chunks.len(), 4 + 1 + 1, "{:?}", chunks.iter().map(Bytes::len).collect::<Vec<_>>());
        let shared = chunks.iter().find(|chunk| chunk.len() == SHARE_FROM).expect("the large piece");
        assert_eq!(shared.as_ptr(), large.as_ptr(), "the large piece is the same memory, not a copy");
    }
}
