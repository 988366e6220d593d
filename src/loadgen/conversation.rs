//! Conversations: multi-turn workloads whose every turn carries the whole history, with the
//! server's own previous answers (the text it actually streamed), and a think time between
//! one turn's end and the next turn's send (docs/workloads.md).
//!
//! A conversation runs in one task, turn after turn: the stage's loop (closed or open)
//! decides when a conversation starts, the conversation decides when its later turns go.
//! A failed turn ends its conversation (its record says why); the others go on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::progress::Progress;
use super::prompts::Workload;
use crate::client::stream::{send_turn, Job, RunContext};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::protocol::{join_messages, Message, Role};
use crate::record::RequestRecord;

/// One conversation of a dataset: an optional system prompt, the user's turns and each
/// turn's output budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationSpec {
    /// A system prompt sent before the first turn (and kept in every later one).
    #[serde(default)]
    pub system: Option<String>,
    /// The user's messages, one per turn.
    pub turns: Vec<String>,
    /// Output token budget of each turn (same length as `turns`).
    pub max_tokens: Vec<u32>,
}

/// How think times are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThinkTime {
    /// Exactly `think_time_s` every time.
    #[default]
    Fixed,
    /// Exponential with mean `think_time_s`, seeded per conversation and turn.
    Exponential,
}

/// A conversation workload, as the Python side sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversations {
    /// The conversations a stage draws from (a seeded order, like prompts).
    pub items: Vec<ConversationSpec>,
    /// Mean pause between a turn's end and the next turn's send, in seconds.
    #[serde(default)]
    pub think_time_s: f64,
    /// Fixed or exponential think times.
    #[serde(default)]
    pub think_time: ThinkTime,
}

impl Conversations {
    /// Check the dataset, with messages that name the conversation and turn at fault.
    pub fn validate(&self) -> Result<()> {
        if self.items.is_empty() {
            return Err(Error::InvalidArgument(
                "the conversation dataset is empty".into(),
            ));
        }
        if !self.think_time_s.is_finite() || self.think_time_s < 0.0 {
            return Err(Error::InvalidArgument(
                "think_time_s must be a non-negative number of seconds".into(),
            ));
        }
        for (c, conv) in self.items.iter().enumerate() {
            if conv.turns.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "conversation {c} has no turn"
                )));
            }
            if let Some(k) = conv.turns.iter().position(|t| t.trim().is_empty()) {
                return Err(Error::InvalidArgument(format!(
                    "conversation {c}, turn {k}: the user's message is empty"
                )));
            }
            if conv.max_tokens.len() != conv.turns.len() || conv.max_tokens.contains(&0) {
                return Err(Error::InvalidArgument(format!(
                    "conversation {c} needs one output budget >= 1 per turn"
                )));
            }
        }
        Ok(())
    }

    /// Where each conversation's turns start in the flattened list of every turn (the
    /// records' `prompt_index`).
    pub fn offsets(&self) -> Vec<u32> {
        let mut at = 0u32;
        self.items
            .iter()
            .map(|c| {
                let start = at;
                at += c.turns.len() as u32;
                start
            })
            .collect()
    }

    /// The pause before turn `turn` of conversation instance `conversation`.
    fn think(&self, seed: u64, conversation: u64, turn: u32) -> Duration {
        let mean = self.think_time_s;
        let s = match self.think_time {
            ThinkTime::Fixed => mean,
            ThinkTime::Exponential if mean > 0.0 => {
                let mix = seed
                    ^ conversation.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ u64::from(turn).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
                let mut rng = ChaCha8Rng::seed_from_u64(mix);
                Exp::new(1.0 / mean).map_or(mean, |d| d.sample(&mut rng))
            }
            ThinkTime::Exponential => 0.0,
        };
        Duration::from_secs_f64(s)
    }
}

/// What a conversation needs besides its index: the stage it belongs to and where its
/// records go.
pub struct TurnContext<'a> {
    /// The run's shared client.
    pub shared: &'a RunContext,
    /// The workload holding the conversations (and their flattened-turn offsets).
    pub workload: &'a Workload,
    /// Record ids.
    pub ids: &'a AtomicU64,
    /// Stage index.
    pub stage: u32,
    /// Stage concurrency (0 in open loop).
    pub batch_size: u32,
    /// A warm-up wave.
    pub warmup: bool,
    /// Seed of the think times.
    pub seed: u64,
    /// Where every record goes as it completes.
    pub records: &'a mpsc::UnboundedSender<RequestRecord>,
    /// The progress line.
    pub progress: &'a Progress,
}

/// Run conversation `index` from its first turn, meant to be sent at `t_start`. Returns
/// false when the records can no longer be kept (the stage is over).
pub async fn run_conversation(cx: &TurnContext<'_>, index: usize, t_start: u64) -> bool {
    let Some(set) = cx.workload.conversations.as_deref() else {
        return true;
    };
    let conv = &set.items[index];
    let mut messages: Vec<Message> = Vec::with_capacity(2 * conv.turns.len() + 1);
    if let Some(s) = &conv.system {
        messages.push(Message {
            role: Role::System,
            content: s.clone(),
        });
    }
    let mut t_sched = t_start;
    let mut instance: Option<u64> = None;
    for (k, user) in conv.turns.iter().enumerate() {
        let turn = k as u32;
        if let Some(id) = instance {
            // The next turn leaves no earlier than the previous one's end plus the think
            // time; a late wake-up shows as send lag against this `t_sched`.
            let pause = set.think(cx.seed, id, turn);
            t_sched = now_ns() + pause.as_nanos() as u64;
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = cx.shared.cancel.cancelled() => return true,
            }
        }
        if cx.shared.cancel.is_cancelled() {
            return true;
        }
        messages.push(Message {
            role: Role::User,
            content: user.clone(),
        });
        let prompt = join_messages(&messages);
        let id = cx.ids.fetch_add(1, Ordering::Relaxed);
        let conversation = *instance.get_or_insert(id);
        let job = Job {
            id,
            stage: cx.stage,
            batch_size: cx.batch_size,
            warmup: cx.warmup,
            prompt_index: cx.workload.turn_offsets[index] + turn,
            prompt: &prompt,
            messages: Some(&messages),
            turn: Some((conversation, turn)),
            max_tokens: conv.max_tokens[k],
            t_sched,
        };
        let (record, answer) = send_turn(cx.shared, job).await;
        let ok = record.ok();
        cx.progress.record(&record);
        if cx.records.send(record).is_err() {
            return false;
        }
        if !ok {
            // A failed turn has no answer to build on: the conversation ends here.
            break;
        }
        messages.push(Message {
            role: Role::Assistant,
            content: answer,
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(turns: &[&str], think: ThinkTime) -> Conversations {
        Conversations {
            items: vec![ConversationSpec {
                system: None,
                turns: turns.iter().map(|s| s.to_string()).collect(),
                max_tokens: vec![4; turns.len()],
            }],
            think_time_s: 0.5,
            think_time: think,
        }
    }

    #[test]
    fn empty_turns_and_missing_budgets_are_named() {
        let e = set(&["hi", "  "], ThinkTime::Fixed)
            .validate()
            .expect_err("an empty turn");
        assert!(e.to_string().contains("conversation 0, turn 1"), "{e}");
        let mut s = set(&["hi"], ThinkTime::Fixed);
        s.items[0].max_tokens.clear();
        assert!(s.validate().is_err());
        assert!(set(&[], ThinkTime::Fixed).validate().is_err());
    }

    #[test]
    fn think_times_are_fixed_or_seeded_exponential() {
        let fixed = set(&["a"], ThinkTime::Fixed);
        assert_eq!(fixed.think(1, 2, 3), Duration::from_millis(500));
        let exp = set(&["a"], ThinkTime::Exponential);
        assert_eq!(exp.think(1, 2, 3), exp.think(1, 2, 3), "seeded");
        let draws: Vec<f64> = (0..4000)
            .map(|i| exp.think(7, i, 1).as_secs_f64())
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.03, "mean {mean}");
    }

    #[test]
    fn offsets_flatten_the_turns() {
        let mut s = set(&["a", "b", "c"], ThinkTime::Fixed);
        s.items.push(s.items[0].clone());
        assert_eq!(s.offsets(), vec![0, 3]);
    }
}
