//! A copy-on-write vector in fixed-size chunks: the writer changes elements in place, a
//! snapshot is a clone of the chunk pointers, and a chunk is copied only when it is written
//! while a snapshot still shares it. Publishing a 100,000-element vector after a few changes
//! costs ~100 pointer copies and one chunk copy per changed chunk, never a copy of the whole.

use std::sync::Arc;

/// Elements per chunk: small enough that copying one is cheap (tens of KiB), large enough
/// that a snapshot of 100,000 elements is ~100 pointers.
pub(crate) const CHUNK: usize = 1024;

#[derive(Debug, Clone)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T: Clone> Chunked<T> {
    /// The elements of `items` (`len` of them, or fewer if the iterator ends first).
    pub(crate) fn from_iter_len(items: impl IntoIterator<Item = T>, len: usize) -> Chunked<T> {
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut current = Vec::with_capacity(CHUNK.min(len));
        let mut count = 0;
        for item in items.into_iter().take(len) {
            current.push(item);
            count += 1;
            if current.len() == CHUNK {
                chunks.push(Arc::new(std::mem::replace(
                    &mut current,
                    Vec::with_capacity(CHUNK.min(len - count)),
                )));
            }
        }
        if !current.is_empty() {
            chunks.push(Arc::new(current));
        }
        Chunked { chunks, len: count }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK).and_then(|c| c.get(i % CHUNK))
    }

    /// The element at `i` for writing; copies its chunk if a snapshot shares it.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        let chunk = self.chunks.get_mut(i / CHUNK)?;
        Arc::make_mut(chunk).get_mut(i % CHUNK)
    }

    /// Elements from `start` on, in order.
    pub(crate) fn iter_from(&self, start: usize) -> impl Iterator<Item = (usize, &T)> + '_ {
        let first = start / CHUNK;
        self.chunks
            .iter()
            .enumerate()
            .skip(first)
            .flat_map(|(c, chunk)| {
                chunk
                    .iter()
                    .enumerate()
                    .map(move |(i, item)| (c * CHUNK + i, item))
            })
            .skip(start % CHUNK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_keeps_its_values_while_the_writer_changes_the_shared_chunk() {
        let mut w = Chunked::from_iter_len(0..3000u32, 3000);
        let snapshot = w.clone();
        *w.get_mut(1500).unwrap() = 7;
        assert_eq!(snapshot.get(1500), Some(&1500));
        assert_eq!(w.get(1500), Some(&7));
        // Only the written chunk was copied: the others are still shared.
        assert!(Arc::ptr_eq(&w.chunks[0], &snapshot.chunks[0]));
        assert!(!Arc::ptr_eq(&w.chunks[1], &snapshot.chunks[1]));
        assert!(Arc::ptr_eq(&w.chunks[2], &snapshot.chunks[2]));
    }

    #[test]
    fn iteration_from_an_offset_crosses_chunks_in_order() {
        let v = Chunked::from_iter_len(0..2500u32, 2500);
        assert_eq!(v.len(), 2500);
        let got: Vec<_> = v.iter_from(1020).take(8).map(|(i, x)| (i, *x)).collect();
        assert_eq!(got[0], (1020, 1020));
        assert_eq!(got[7], (1027, 1027));
        assert_eq!(v.iter_from(2499).count(), 1);
        assert_eq!(v.iter_from(2500).count(), 0);
    }
}
