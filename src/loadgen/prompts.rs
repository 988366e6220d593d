//! Which prompt each request sends: a seeded order, the same for a given seed on every run
//! and machine, cycling through fresh shuffles of the whole list (or of the stage's own
//! prompts, in a sweep over input lengths) so every prompt is used before any repeats. A
//! conversation workload orders its conversations the same way.

use std::sync::Arc;

use rand::seq::SliceRandom;

use super::conversation::Conversations;
use crate::client::stream::Job;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The requests a sweep can send: prompts, each with its own output token budget, or
/// conversations.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Prompt texts.
    pub prompts: Vec<String>,
    /// Output token budget of each prompt (same length as `prompts`).
    pub max_tokens: Vec<u32>,
    /// Per stage, the prompts it draws from (a sweep over input lengths); all when absent.
    pub stage_prompts: Option<Vec<Vec<u32>>>,
    /// Conversations: each stage runs whole conversations instead of single prompts.
    pub conversations: Option<Arc<Conversations>>,
    /// Where each conversation's turns start in the flattened turn list.
    pub turn_offsets: Vec<u32>,
}

impl Workload {
    /// How many items a stage's order draws from: conversations, the stage's own prompts,
    /// or every prompt.
    fn pool(&self, stage: u32) -> usize {
        match (&self.conversations, &self.stage_prompts) {
            (Some(c), _) => c.items.len(),
            (None, Some(per)) => per.get(stage as usize).map_or(self.prompts.len(), Vec::len),
            (None, None) => self.prompts.len(),
        }
    }

    /// What request (or conversation) `j` of stage `stage` sends: an index into the
    /// conversations, or into the prompts.
    pub fn pick(&self, order: &PromptOrder, stage: u32, j: u64) -> usize {
        let i = order.index_among(self.pool(stage), stage, j);
        match (&self.conversations, &self.stage_prompts) {
            (None, Some(per)) => per.get(stage as usize).map_or(i, |p| p[i] as usize),
            _ => i,
        }
    }

    /// The request for prompt `prompt_index`, with that prompt's output budget.
    pub fn job(
        &self,
        id: u64,
        stage: u32,
        batch_size: u32,
        warmup: bool,
        prompt_index: usize,
        t_sched: u64,
    ) -> Job<'_> {
        Job {
            id,
            stage,
            batch_size,
            warmup,
            prompt_index: prompt_index as u32,
            prompt: &self.prompts[prompt_index],
            messages: None,
            turn: None,
            max_tokens: self.max_tokens[prompt_index],
            t_sched,
        }
    }
}

/// A seeded prompt order per stage.
#[derive(Debug, Clone)]
pub struct PromptOrder {
    n: usize,
    seed: u64,
}

impl PromptOrder {
    /// An order over `n` prompts (`n > 0`).
    pub fn new(n: usize, seed: u64) -> Self {
        PromptOrder { n: n.max(1), seed }
    }

    /// The prompt index of request `j` of stage `stage`.
    pub fn index(&self, stage: u32, j: u64) -> usize {
        self.index_among(self.n, stage, j)
    }

    /// The same order over a pool of `n` items instead of the whole list.
    pub fn index_among(&self, n: usize, stage: u32, j: u64) -> usize {
        let n = n.max(1);
        let round = j / n as u64;
        let pos = (j % n as u64) as usize;
        // A fresh permutation per (stage, round); cheap enough for prompt lists of
        // thousands, and stateless so workers need no shared lock.
        let mut perm: Vec<usize> = (0..n).collect();
        let mix = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(stage) << 32)
            .wrapping_add(round);
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(mix));
        perm[pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_covering() {
        let a = PromptOrder::new(10, 42);
        let b = PromptOrder::new(10, 42);
        let first: Vec<usize> = (0..10).map(|j| a.index(0, j)).collect();
        assert_eq!(first, (0..10).map(|j| b.index(0, j)).collect::<Vec<_>>());
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>(), "a permutation");
        let other: Vec<usize> = (0..10)
            .map(|j| PromptOrder::new(10, 43).index(0, j))
            .collect();
        assert_ne!(first, other);
    }
}
