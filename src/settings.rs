//! Every setting's default and every choice, read off the engine's own definitions, so
//! the Python API, the command line and the TOML schema show them without copying them.
//!
//! Defaults come from serde itself: a config with only its required fields is
//! deserialized (serde fills in every default) and serialized back. A default changed on
//! a Rust struct is therefore the default everywhere, and the test in
//! `tests/python/test_settings.py` checks that nothing in Python shadows one.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::baseline::bench::BaselineRun;
use crate::baseline::serve::ServeConfig;
use crate::client::{Api, ForceLen, TargetSpec, Timeouts};
use crate::error::{Error, Result};
use crate::loadgen::{OpenLoop, Process, SweepConfig};
use crate::metrics::slo::Slo;
use crate::metrics::Pricing;
use crate::sim::faults::Fault;
use crate::sim::SimConfig;
use crate::telemetry::nvml::SamplerConfig;

/// Deserialize `json` as `T`, naming the offending key (`batch_sizes[0]: invalid value…`,
/// `unknown field \`batch_size\``) in the error: the one way settings enter the engine.
pub fn parse<T: DeserializeOwned>(what: &str, value: Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::InvalidArgument(format!("invalid {what}: {inner}"))
        } else {
            Error::InvalidArgument(format!("invalid {what}: {path}: {inner}"))
        }
    })
}

/// The defaults of `T`: `required` filled in by serde, with the `required` keys removed.
fn defaults_of<T: DeserializeOwned + Serialize>(required: Value) -> Value {
    let keys: Vec<String> = required
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let parsed: T = match serde_json::from_value(required) {
        Ok(v) => v,
        // Only reachable if a struct gains a required field this module does not give.
        Err(e) => return json!({"error": e.to_string()}),
    };
    let mut out = serde_json::to_value(parsed).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut out {
        for k in &keys {
            m.shift_remove(k);
        }
    }
    out
}

fn names<T: Serialize>(values: &[T]) -> Vec<Value> {
    values
        .iter()
        .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
        .collect()
}

/// Requests in a closed-loop stage of concurrency `batch_size` when the user gives no
/// count: `max(4 × batch size, 16)`.
pub fn default_requests_for(batch_size: u32) -> u64 {
    (4 * u64::from(batch_size)).max(16)
}

/// Every default and choice, as one JSON object (`llmbench._core.settings()`).
pub fn defaults() -> Value {
    let sweep =
        defaults_of::<SweepConfig>(json!({"target": {"url": "", "api": "chat"}, "prompts": []}));
    let target = defaults_of::<TargetSpec>(json!({"url": "", "api": "chat"}));
    let model = json!({"model": "tiny"});
    json!({
        "sweep": sweep,
        "open_loop": defaults_of::<OpenLoop>(json!({"rates": []})),
        "target": target,
        "timeouts": Timeouts::default(),
        "pricing": Pricing::default(),
        "sim": SimConfig::default(),
        "baseline_run": defaults_of::<BaselineRun>(json!({"model": model})),
        "baseline_model": defaults_of::<crate::baseline::ModelSpec>(model.clone()),
        "baseline_server": defaults_of::<ServeConfig>(json!({"model": model})),
        "gpu_sampler": SamplerConfig::default(),
        "slo": defaults_of::<Slo>(json!({})),
        "server_times": crate::telemetry::prom::SERVER_TIMES,
        "server_counters": crate::telemetry::prom::SERVER_COUNTERS,
        "choices": {
            "api": names(&Api::ALL),
            "arrival": names(&Process::BY_NAME),
            "force_output_len": names(&ForceLen::ALL),
            "faults": names(&Fault::ALL),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_structs_own() {
        let d = defaults();
        assert_eq!(
            d["sweep"]["batch_sizes"],
            json!(crate::loadgen::DEFAULT_BATCH_SIZES)
        );
        assert_eq!(d["sweep"]["max_tokens"], 128);
        assert!(d["sweep"].get("target").is_none() && d["sweep"].get("prompts").is_none());
        assert_eq!(d["target"]["timeouts"], json!(Timeouts::default()));
        assert_eq!(d["sim"]["ttft_ms"], 50.0);
        assert_eq!(d["baseline_server"]["max_batch"], 32);
        assert_eq!(
            d["choices"]["arrival"],
            json!(["poisson", "constant", "gamma", "ramp"])
        );
        assert_eq!(d["choices"]["faults"].as_array().map(Vec::len), Some(15));
        assert!(!d.to_string().contains("\"error\""), "{d}");
    }

    fn check_sweep(value: Value) -> Result<()> {
        parse::<SweepConfig>("sweep config", value)?.validate()
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_it() {
        let cfg = json!({"target": {"url": "http://h:1", "api": "chat", "model": "m"},
                         "prompts": ["p"], "batch_size": [1]});
        let msg = check_sweep(cfg).expect_err("misspelt").to_string();
        assert!(msg.contains("unknown field `batch_size`"), "{msg}");
        let cfg = json!({"target": {"url": "http://h:1", "api": "chat", "model": "m",
                                    "timeouts": {"ttft": 3}}, "prompts": ["p"]});
        let msg = check_sweep(cfg).expect_err("misspelt").to_string();
        assert!(
            msg.contains("target.timeouts") && msg.contains("`ttft`"),
            "{msg}"
        );
        let cfg = json!({"target": {"url": "http://h:1", "api": "chat", "model": "m"},
                         "prompts": ["p"], "batch_sizes": [-1]});
        let msg = check_sweep(cfg).expect_err("negative").to_string();
        assert!(msg.contains("batch_sizes[0]"), "{msg}");
    }
}
