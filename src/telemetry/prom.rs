//! Prometheus `/metrics` scraping: a parser for the text exposition format and a poller
//! that keeps, on the run's clock, the series a benchmark needs from vLLM (V1 and V0
//! names), TGI and the scripted server.
//!
//! Hand-written on purpose: the common crate (`prometheus-parse`) matches metric names with
//! `\w+`, so it silently drops every `vllm:`-prefixed series, and it splits label sets at
//! commas even inside quoted values. The format's sample line is small enough to parse
//! exactly here (names with colons, escaped label values, `NaN`/`+Inf`, timestamps).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ns;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// Metric name as exposed (e.g. `vllm:num_requests_running`, `tgi_queue_size`).
    pub name: String,
    /// Label pairs in the order given.
    pub labels: Vec<(String, String)>,
    /// The value (`NaN`, `+Inf`, `-Inf` allowed).
    pub value: f64,
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parse `{a="x",b="y\"z"}` starting after the `{`; returns the labels and the rest.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((name, value));
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// Parse one line; `None` for comments, blank lines and lines that are not samples.
pub fn parse_line(line: &str) -> Option<PromSample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    if name_end == 0 {
        return None;
    }
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (l, r) = parse_labels(after)?;
        labels = l;
        rest = r;
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(PromSample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parse a whole exposition; malformed lines are skipped (a scrape is best effort).
pub fn parse(text: &str) -> Vec<PromSample> {
    text.lines().filter_map(parse_line).collect()
}

/// The series kept from each scrape besides `SERVER_COUNTERS` and `SERVER_TIMES`. Gauges
/// of a fraction are averaged over label sets (one per engine under data parallelism);
/// everything else is summed.
pub const KEPT_SERIES: &[&str] = &[
    // vLLM V1 (and names shared with V0)
    "vllm:kv_cache_usage_perc",
    "vllm:num_requests_running",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    // their names before vLLM 0.9
    "vllm:gpu_prefix_cache_queries_total",
    "vllm:gpu_prefix_cache_hits_total",
    "vllm:request_success_total",
    // vLLM V0 only
    "vllm:gpu_cache_usage_perc",
    "vllm:cpu_cache_usage_perc",
    "vllm:num_requests_swapped",
    "vllm:gpu_prefix_cache_hit_rate",
    // TGI
    "tgi_batch_current_size",
    "tgi_batch_current_max_tokens",
    "tgi_batch_max_total_tokens",
    "tgi_request_success",
    "tgi_request_failure",
    // llmbench's scripted server
    "llmbench_sim_running",
    "llmbench_sim_served_total",
    // llmbench's baseline server (its KV cache in exact bytes)
    "llmbench_baseline_running",
    "llmbench_baseline_batches_total",
    "llmbench_baseline_served_total",
    "llmbench_baseline_kv_cache_bytes",
];

/// The server's own request times and step sizes, kept whole (every bucket, `_sum` and
/// `_count`) so a stage's share of each can be differenced: what each measures, then its
/// histogram's names, newest first (a server exports one of them; vLLM 0.24 still exports
/// `time_per_output_token_seconds` beside its newer name). The one table of these names,
/// read by `python/llmbench/columns/server_times.py` through `_core.settings()`; by server
/// and version in `tests/fixtures/README.md`. Times are in seconds; `step_tokens` in
/// tokens per engine step.
pub const SERVER_TIMES: &[(&str, &[&str])] = &[
    (
        "queue",
        &[
            "vllm:request_queue_time_seconds",
            "tgi_request_queue_duration",
            "sglang:queue_time_seconds",
        ],
    ),
    ("prefill", &["vllm:request_prefill_time_seconds"]),
    ("decode", &["vllm:request_decode_time_seconds"]),
    (
        "inference",
        &[
            "vllm:request_inference_time_seconds",
            "tgi_request_inference_duration",
        ],
    ),
    (
        "ttft",
        &[
            "vllm:time_to_first_token_seconds",
            "sglang:time_to_first_token_seconds",
        ],
    ),
    (
        "itl",
        &[
            "vllm:inter_token_latency_seconds",
            "vllm:time_per_output_token_seconds",
            "sglang:inter_token_latency_seconds",
            "sglang:time_per_output_token_seconds",
            "tgi_request_mean_time_per_token_duration",
        ],
    ),
    (
        "e2e",
        &[
            "vllm:e2e_request_latency_seconds",
            "tgi_request_duration",
            "sglang:e2e_request_latency_seconds",
        ],
    ),
    ("step_tokens", &["vllm:iteration_tokens_total"]),
    // Tokens of each finished request: the server's count, beside the client's.
    (
        "request_out_tokens",
        &[
            "vllm:request_generation_tokens",
            "tgi_request_generated_tokens",
            "sglang:generation_tokens_histogram",
        ],
    ),
    (
        "request_in_tokens",
        &["vllm:request_prompt_tokens", "tgi_request_input_length"],
    ),
];

/// The server's own counters and gauges beside its request times: what each counts, then
/// its names by server, newest first (a server exports one). Kept from every scrape and
/// differenced over each stage (`python/llmbench/columns/server_times.py`, through
/// `_core.settings()`), or, for the gauges `waiting`, `llamacpp_busy` and
/// `llamacpp_deferred`, their peak over the stage. The one table of these names; by server
/// and version in `tests/fixtures/README.md`.
pub const SERVER_COUNTERS: &[(&str, &[&str])] = &[
    (
        "generated_tokens",
        &[
            "vllm:generation_tokens_total",
            "tgi_request_generated_tokens_sum",
            "llamacpp:tokens_predicted_total",
            "sglang:generation_tokens_total",
        ],
    ),
    (
        "prompt_tokens",
        &[
            "vllm:prompt_tokens_total",
            "tgi_request_input_length_sum",
            "llamacpp:prompt_tokens_total",
            "sglang:prompt_tokens_total",
        ],
    ),
    ("preemptions", &["vllm:num_preemptions_total"]),
    (
        "waiting",
        &[
            "vllm:num_requests_waiting",
            "tgi_queue_size",
            "sglang:num_queue_reqs",
            "llmbench_sim_waiting",
            "llmbench_baseline_waiting",
        ],
    ),
    // Speculative decoding (vLLM V1, with a draft model or method configured).
    ("spec_drafts", &["vllm:spec_decode_num_drafts_total"]),
    (
        "spec_draft_tokens",
        &["vllm:spec_decode_num_draft_tokens_total"],
    ),
    (
        "spec_accepted_tokens",
        &["vllm:spec_decode_num_accepted_tokens_total"],
    ),
    // llama.cpp's server (`--metrics`): its time is counters of seconds, not histograms.
    ("prompt_seconds", &["llamacpp:prompt_seconds_total"]),
    (
        "predicted_seconds",
        &["llamacpp:tokens_predicted_seconds_total"],
    ),
    ("llamacpp_busy", &["llamacpp:requests_processing"]),
    ("llamacpp_deferred", &["llamacpp:requests_deferred"]),
];

/// Whether `name` is one of `SERVER_COUNTERS`.
fn server_counter(name: &str) -> bool {
    SERVER_COUNTERS
        .iter()
        .any(|(_, names)| names.contains(&name))
}

/// The histogram family of a `_bucket`, `_sum` or `_count` sample named `name`, when it
/// is one of `SERVER_TIMES`, with the suffix.
fn server_time_family(name: &str) -> Option<(&str, &'static str)> {
    ["_bucket", "_sum", "_count"]
        .into_iter()
        .find_map(|suffix| {
            let family = name.strip_suffix(suffix)?;
            SERVER_TIMES
                .iter()
                .any(|(_, names)| names.contains(&family))
                .then_some((family, suffix))
        })
}

/// Info-style series whose labels are configuration (kept once, as label maps).
pub const INFO_SERIES: &[&str] = &["vllm:cache_config_info"];

fn averaged(name: &str) -> bool {
    name.ends_with("_perc") || name.ends_with("_hit_rate")
}

/// Reduce a scrape to the kept series (name → value) and the info labels.
pub fn reduce(
    samples: &[PromSample],
) -> (
    BTreeMap<String, f64>,
    BTreeMap<String, BTreeMap<String, String>>,
) {
    let mut sums: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    let mut info = BTreeMap::new();
    for s in samples {
        if s.name.ends_with("_created") {
            continue;
        }
        if INFO_SERIES.contains(&s.name.as_str()) {
            info.entry(s.name.clone())
                .or_insert_with(|| s.labels.iter().cloned().collect());
            continue;
        }
        // A histogram's bucket is kept as `{family}_bucket:{le}`, summed over label sets
        // (engines) like the counters, so buckets of several engines add up.
        let key = match server_time_family(&s.name) {
            Some((family, "_bucket")) => {
                let Some((_, le)) = s.labels.iter().find(|(k, _)| k == "le") else {
                    continue;
                };
                Some(format!("{family}_bucket:{le}"))
            }
            Some(_) => Some(s.name.clone()),
            None => (KEPT_SERIES.contains(&s.name.as_str()) || server_counter(&s.name))
                .then(|| s.name.clone()),
        };
        if let Some(key) = key {
            let e = sums.entry(key).or_insert((0.0, 0));
            e.0 += s.value;
            e.1 += 1;
        }
    }
    let values = sums
        .into_iter()
        .map(|(k, (sum, n))| {
            let v = if averaged(&k) {
                sum / f64::from(n)
            } else {
                sum
            };
            (k, v)
        })
        .collect();
    (values, info)
}

/// One scrape's kept values.
#[derive(Debug, Clone, Serialize)]
pub struct ScrapePoint {
    /// Run-clock time the response arrived.
    pub t_ns: u64,
    /// Kept series.
    pub values: BTreeMap<String, f64>,
}

/// What a scraper collected.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrapeOutput {
    /// The scraped URL.
    pub url: String,
    /// Successful scrapes, in order.
    pub points: Vec<ScrapePoint>,
    /// Info series labels (e.g. `vllm:cache_config_info`), from the first scrape with them.
    pub info: BTreeMap<String, BTreeMap<String, String>>,
    /// Failed scrapes (a missing or broken endpoint is recorded, never fatal).
    pub errors: Vec<(u64, String)>,
    /// Scrapes attempted.
    pub attempts: u64,
}

/// Polls a `/metrics` URL every `period` on the shared runtime until cancelled.
pub struct Scraper {
    cancel: CancellationToken,
    out: Arc<Mutex<ScrapeOutput>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scraper {
    /// Start polling (must be called on a tokio runtime).
    pub fn start(http: reqwest::Client, url: String, period: Duration) -> Scraper {
        let cancel = CancellationToken::new();
        let out = Arc::new(Mutex::new(ScrapeOutput {
            // What is reported never carries credentials.
            url: crate::util::redact_url(&url),
            ..ScrapeOutput::default()
        }));
        let (c, o) = (cancel.clone(), out.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                // One last scrape when stopped: the counters after the last stage ended
                // (how a stage's counter increase, e.g. its prefix-cache hits, is closed).
                let last = tokio::select! {
                    _ = c.cancelled() => true,
                    _ = tick.tick() => false,
                };
                let result = scrape_once(&http, &url, period.max(Duration::from_secs(2))).await;
                let t = now_ns();
                let Ok(mut o) = o.lock() else { break };
                o.attempts += 1;
                match result {
                    Ok(text) => {
                        let (values, info) = reduce(&parse(&text));
                        for (k, v) in info {
                            o.info.entry(k).or_insert(v);
                        }
                        o.points.push(ScrapePoint { t_ns: t, values });
                    }
                    // Keep the first few messages and count the rest; a dead endpoint
                    // polled for an hour must not grow memory.
                    Err(e) if o.errors.len() < 100 => o.errors.push((t, e)),
                    Err(_) => {}
                }
                if last {
                    break;
                }
            }
        });
        Scraper { cancel, out, task }
    }

    /// Stop and return what was collected.
    pub async fn stop(self) -> ScrapeOutput {
        self.cancel.cancel();
        let _ = self.task.await;
        self.out.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

async fn scrape_once(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<String, String> {
    let resp = tokio::time::timeout(timeout, http.get(url).send())
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    tokio::time::timeout(timeout, resp.text())
        .await
        .map_err(|_| "timeout reading body".to_string())?
        .map_err(|e| format!("reading body failed: {}", e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture_text as fixture;

    #[test]
    fn sample_lines() {
        let s = parse_line(r#"vllm:num_requests_running{engine="0",model_name="m"} 3.0"#)
            .expect("sample");
        assert_eq!(s.name, "vllm:num_requests_running");
        assert_eq!(s.labels[0], ("engine".into(), "0".into()));
        assert_eq!(s.value, 3.0);
        let s = parse_line(r#"x{a="q\"u,o}te",b="line\nbreak"} +Inf 1700000000000"#).expect("s");
        assert_eq!(s.labels[0].1, "q\"u,o}te");
        assert_eq!(s.labels[1].1, "line\nbreak");
        assert_eq!(s.value, f64::INFINITY);
        assert!(parse_line("tgi_queue_size 0").is_some());
        assert!(parse_line("x NaN").expect("nan").value.is_nan());
        assert!(parse_line("# HELP x y").is_none());
        assert!(parse_line("x{unterminated=\"1} 2").is_none());
        assert!(parse_line("x notanumber").is_none());
    }

    /// A fixture's samples, checked to be one per sample line (every line parses).
    fn parse_every_line(name: &str) -> Vec<PromSample> {
        let text = fixture(name);
        let samples = parse(&text);
        let lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(samples.len(), lines, "{name}: every sample line parses");
        samples
    }

    #[test]
    fn vllm_v1_fixture() {
        let samples = parse_every_line("vllm_metrics.txt");
        let (values, info) = reduce(&samples);
        for k in [
            "vllm:kv_cache_usage_perc",
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:num_preemptions_total",
            "vllm:prefix_cache_queries_total",
            "vllm:prefix_cache_hits_total",
        ] {
            assert!(values.contains_key(k), "{k}");
        }
        assert!(!values.keys().any(|k| k.ends_with("_created")));
        let cc = &info["vllm:cache_config_info"];
        assert_eq!(cc["block_size"], "16");
        assert_eq!(cc["num_gpu_blocks"], "27153");
    }

    #[test]
    fn server_time_histograms_are_kept_whole_and_nothing_else_is() {
        for fixture in ["vllm_0_24_metrics.txt", "tgi_metrics.txt"] {
            let (values, _) = reduce(&parse_every_line(fixture));
            let mut families = 0;
            for (_, names) in SERVER_TIMES {
                for family in *names {
                    let Some(count) = values.get(&format!("{family}_count")) else {
                        continue;
                    };
                    families += 1;
                    let inf = values[&format!("{family}_bucket:+Inf")];
                    assert_eq!(inf, *count, "{fixture} {family}: +Inf bucket is the count");
                    assert!(values.contains_key(&format!("{family}_sum")));
                }
            }
            assert!(families >= 4, "{fixture}: {families} families");
            // Histograms outside the table (HTTP latency, the max_tokens asked) stay out.
            assert!(!values
                .keys()
                .any(|k| k.starts_with("http_request_duration")));
            assert!(!values
                .keys()
                .any(|k| k.starts_with("vllm:request_params_max_tokens")));
        }
        let (v, _) = reduce(&parse_every_line("vllm_0_24_metrics.txt"));
        assert_eq!(v["vllm:request_queue_time_seconds_bucket:0.3"], 1030.0);
    }

    #[test]
    fn vllm_0_24_captured_metrics() {
        // `/metrics` of vLLM 0.24.0 after the study's runs with prefix caching on, and of
        // the server started with it off (docs/real_servers.md): every series llmbench
        // reads is there under the same name, with the values the capture holds.
        let samples = parse_every_line("vllm_0_24_metrics.txt");
        let (values, info) = reduce(&samples);
        for k in [
            "vllm:kv_cache_usage_perc",
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:num_preemptions_total",
            "vllm:prompt_tokens_total",
            "vllm:generation_tokens_total",
            "vllm:request_success_total",
        ] {
            assert!(values.contains_key(k), "{k}");
        }
        assert_eq!(values["vllm:prefix_cache_queries_total"], 198_762.0);
        assert_eq!(values["vllm:prefix_cache_hits_total"], 175_936.0);
        let cc = &info["vllm:cache_config_info"];
        assert_eq!(cc["block_size"], "16");
        assert_eq!(cc["num_gpu_blocks"], "13474");
        assert_eq!(cc["enable_prefix_caching"], "True");
        let off = parse_every_line("vllm_0_24_metrics_prefix_off.txt");
        let (values, info) = reduce(&off);
        assert_eq!(values["vllm:prefix_cache_queries_total"], 0.0);
        assert_eq!(
            info["vllm:cache_config_info"]["enable_prefix_caching"],
            "False"
        );
    }

    #[test]
    fn vllm_v0_and_tgi_fixtures() {
        let v0 = parse(&fixture("vllm_metrics_v0.txt"));
        let (values, info) = reduce(&v0);
        assert!(values.contains_key("vllm:gpu_cache_usage_perc"));
        assert!(values.contains_key("vllm:num_requests_swapped"));
        assert!(info.contains_key("vllm:cache_config_info"));
        let tgi = parse_every_line("tgi_metrics.txt");
        let (values, _) = reduce(&tgi);
        for k in [
            "tgi_batch_current_size",
            "tgi_batch_current_max_tokens",
            "tgi_batch_max_total_tokens",
            "tgi_queue_size",
            "tgi_request_success",
        ] {
            assert!(values.contains_key(k), "{k}");
        }
    }
}
