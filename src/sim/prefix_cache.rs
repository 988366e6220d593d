//! The scripted server's prefix cache, a model of vLLM's automatic prefix caching: prompts
//! are cut into full blocks of `prefix_block_tokens` tokens, each block named by a hash of
//! itself and every block before it; a request's cached prefix is its leading run of
//! blocks already in the cache. Blocks are kept least-recently-used first out, up to a
//! capacity. Counters in tokens, as vLLM V1 exports them
//! (`vllm:prefix_cache_queries_total`, `vllm:prefix_cache_hits_total`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// The chained hashes of the full blocks of `words` (a partial last block is never cached).
pub fn block_hashes(words: &[&str], block_tokens: u32) -> Vec<u64> {
    let b = block_tokens.max(1) as usize;
    let mut prev = 0u64;
    words
        .chunks_exact(b)
        .map(|block| {
            let mut h = DefaultHasher::new();
            prev.hash(&mut h);
            block.hash(&mut h);
            prev = h.finish();
            prev
        })
        .collect()
}

/// An LRU set of block hashes with the hit counters.
#[derive(Debug, Default)]
pub struct PrefixCache {
    capacity: usize,
    block_tokens: u32,
    tick: u64,
    last_use: HashMap<u64, u64>,
    by_tick: BTreeMap<u64, u64>,
    /// Prompt tokens looked up.
    pub queries: u64,
    /// Prompt tokens found cached.
    pub hits: u64,
}

impl PrefixCache {
    /// A cache of `capacity` blocks of `block_tokens` tokens.
    pub fn new(capacity: u32, block_tokens: u32) -> Self {
        PrefixCache {
            capacity: capacity as usize,
            block_tokens: block_tokens.max(1),
            ..PrefixCache::default()
        }
    }

    /// Look up a prompt of `prompt_tokens` tokens and `blocks` (its block hashes), then
    /// cache its blocks. Returns the tokens found cached.
    pub fn admit(&mut self, blocks: &[u64], prompt_tokens: u32) -> u32 {
        let cached = blocks
            .iter()
            .take_while(|h| self.last_use.contains_key(h))
            .count() as u32;
        let hit = cached * self.block_tokens;
        self.queries += u64::from(prompt_tokens);
        self.hits += u64::from(hit);
        for &h in blocks {
            self.tick += 1;
            if let Some(old) = self.last_use.insert(h, self.tick) {
                self.by_tick.remove(&old);
            }
            self.by_tick.insert(self.tick, h);
        }
        while self.last_use.len() > self.capacity {
            let Some((_, h)) = self.by_tick.pop_first() else {
                break;
            };
            self.last_use.remove(&h);
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize, tag: &str) -> Vec<String> {
        (0..n).map(|i| format!("{tag}{i}")).collect()
    }

    #[test]
    fn a_growing_prompt_hits_its_earlier_full_blocks() {
        let mut c = PrefixCache::new(100, 4);
        let first: Vec<String> = words(10, "a");
        let refs: Vec<&str> = first.iter().map(String::as_str).collect();
        assert_eq!(c.admit(&block_hashes(&refs, 4), 10), 0);
        let mut longer = first.clone();
        longer.extend(words(7, "b"));
        let refs: Vec<&str> = longer.iter().map(String::as_str).collect();
        // Two full blocks of the first prompt (8 tokens); its partial third is not cached.
        assert_eq!(c.admit(&block_hashes(&refs, 4), 17), 8);
        assert_eq!((c.queries, c.hits), (27, 8));
    }

    #[test]
    fn a_different_first_block_shares_nothing_and_lru_evicts() {
        let a = words(8, "a");
        let b = words(8, "b");
        let ra: Vec<&str> = a.iter().map(String::as_str).collect();
        let rb: Vec<&str> = b.iter().map(String::as_str).collect();
        let mut c = PrefixCache::new(2, 4);
        c.admit(&block_hashes(&ra, 4), 8);
        assert_eq!(c.admit(&block_hashes(&rb, 4), 8), 0, "no shared prefix");
        // Capacity 2: b's blocks pushed a's out.
        assert_eq!(c.admit(&block_hashes(&ra, 4), 8), 0);
        assert_eq!(c.admit(&block_hashes(&ra, 4), 8), 8);
    }
}
