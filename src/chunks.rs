//! Compact storage of a request's output chunks (arrival time and token count of each
//! token-bearing event), so a run of a million requests keeps every chunk in memory at a
//! few bytes per token.
//!
//! Layout: the first chunk's time as a plain `u64`, then one LEB128 varint per chunk for
//! the gap to the previous chunk (zig-zag, so a clock that stepped back is stored exactly
//! rather than clamped) with the lowest bit saying whether a token count other than 1
//! follows as a second varint. A 10–60 ms gap in nanoseconds takes 4 bytes; a one-token
//! chunk needs nothing more, so a typical stream costs 4 bytes per token against 12 for a
//! `u64` time and a `u32` count. Written by hand because it is a dozen lines of varint code
//! and the crates that do it (e.g. `integer-encoding`) would add a dependency for less.
//!
//! On disk and in JSON the record keeps its two plain arrays, `chunk_times` and
//! `chunk_tokens`: this is an in-memory representation only.

use serde::{Deserialize, Serialize, Serializer};

/// The chunks of one request, compactly encoded; iterate with [`Chunks::iter`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "ChunkArrays")]
pub struct Chunks {
    first: u64,
    last: u64,
    len: u32,
    tokens: u64,
    bytes: Vec<u8>,
}

/// The two-array form used in files (and by callers that build records by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkArrays {
    /// Arrival time of every token-bearing event.
    pub chunk_times: Vec<u64>,
    /// Tokens carried by each of those events.
    pub chunk_tokens: Vec<u32>,
}

impl From<ChunkArrays> for Chunks {
    fn from(a: ChunkArrays) -> Self {
        Chunks::from_parts(&a.chunk_times, &a.chunk_tokens)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> u128 {
    let mut v = 0u128;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v |= u128::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

impl Chunks {
    /// Encode parallel arrays of times and token counts (the shorter one sets the length).
    pub fn from_parts(times: &[u64], tokens: &[u32]) -> Self {
        let mut c = Chunks::default();
        for (&t, &k) in times.iter().zip(tokens) {
            c.push(t, k);
        }
        c.bytes.shrink_to_fit();
        c
    }

    /// Append a chunk of `tokens` tokens that arrived at `t`.
    pub fn push(&mut self, t: u64, tokens: u32) {
        let gap = if self.len == 0 {
            self.first = t;
            0
        } else {
            t.wrapping_sub(self.last) as i64
        };
        let other_count = tokens != 1;
        put_varint(
            &mut self.bytes,
            u128::from(zigzag(gap)) << 1 | u128::from(other_count),
        );
        if other_count {
            put_varint(&mut self.bytes, u128::from(tokens));
        }
        self.last = t;
        self.len += 1;
        self.tokens += u64::from(tokens);
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Time of the first chunk.
    pub fn first_time(&self) -> Option<u64> {
        (self.len > 0).then_some(self.first)
    }

    /// Time of the last chunk.
    pub fn last_time(&self) -> Option<u64> {
        (self.len > 0).then_some(self.last)
    }

    /// Sum of the token counts (saturating at `u32::MAX`).
    pub fn total_tokens(&self) -> u32 {
        u32::try_from(self.tokens).unwrap_or(u32::MAX)
    }

    /// `(time, tokens)` of every chunk, in order.
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            chunks: self,
            pos: 0,
            left: self.len,
            t: self.first,
        }
    }

    /// The arrival times, decoded.
    pub fn times(&self) -> Vec<u64> {
        self.iter().map(|(t, _)| t).collect()
    }

    /// The token counts, decoded.
    pub fn tokens(&self) -> Vec<u32> {
        self.iter().map(|(_, k)| k).collect()
    }

    /// Bytes this value holds on the heap (its encoded chunks).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Iterator over `(time, tokens)`.
pub struct ChunkIter<'a> {
    chunks: &'a Chunks,
    pos: usize,
    left: u32,
    t: u64,
}

impl Iterator for ChunkIter<'_> {
    type Item = (u64, u32);

    fn next(&mut self) -> Option<(u64, u32)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let bytes = &self.chunks.bytes;
        let head = get_varint(bytes, &mut self.pos);
        self.t = self.t.wrapping_add(unzigzag((head >> 1) as u64) as u64);
        let k = if head & 1 == 1 {
            get_varint(bytes, &mut self.pos) as u32
        } else {
            1
        };
        Some((self.t, k))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for ChunkIter<'_> {}

impl Serialize for Chunks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Seq<I>(std::cell::RefCell<Option<I>>);
        impl<I: Iterator<Item = T>, T: Serialize> Serialize for Seq<I> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let it = self.0.borrow_mut().take();
                s.collect_seq(it.into_iter().flatten())
            }
        }
        let seq = |f: fn((u64, u32)) -> u64| Seq(std::cell::RefCell::new(Some(self.iter().map(f))));
        let mut st = s.serialize_struct("Chunks", 2)?;
        st.serialize_field("chunk_times", &seq(|(t, _)| t))?;
        st.serialize_field("chunk_tokens", &seq(|(_, k)| u64::from(k)))?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typical_stream_takes_four_bytes_per_token() {
        let times: Vec<u64> = (0..1000u64)
            .map(|i| 5_000_000_000 + i * 20_000_000)
            .collect();
        let c = Chunks::from_parts(&times, &vec![1; 1000]);
        assert_eq!(c.times(), times);
        assert_eq!(c.total_tokens(), 1000);
        assert!(c.heap_bytes() <= 4 * 1000, "{} bytes", c.heap_bytes());
    }

    #[test]
    fn json_keeps_the_two_arrays() {
        let c = Chunks::from_parts(&[10, 30, 25], &[2, 1, 0]);
        let v = serde_json::to_value(&c).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"chunk_times": [10, 30, 25], "chunk_tokens": [2, 1, 0]})
        );
        let back: Chunks = serde_json::from_value(v).expect("deserializes");
        assert_eq!(back, c);
    }

    proptest! {
        #[test]
        fn round_trips_any_times_and_counts(
            chunks in proptest::collection::vec((any::<u64>(), any::<u32>()), 0..64)
        ) {
            let (times, tokens): (Vec<u64>, Vec<u32>) = chunks.into_iter().unzip();
            let c = Chunks::from_parts(&times, &tokens);
            prop_assert_eq!(c.times(), times.clone());
            prop_assert_eq!(c.tokens(), tokens);
            prop_assert_eq!(c.first_time(), times.first().copied());
            prop_assert_eq!(c.last_time(), times.last().copied());
            prop_assert_eq!(c.len(), times.len());
        }
    }
}
