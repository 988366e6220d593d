//! Known answers for the baseline: the golden fixture (a tiny random LLaMA whose logits and
//! greedy tokens HuggingFace transformers computed, `tests/fixtures/baseline/make_golden.py`),
//! the KV-cache bytes against the formula of docs/architecture.md ("Metrics"), the loader's
//! errors, sharded weights, the presets' shapes, and the served
//! stream against in-process generation.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use super::config::LlamaShape;
use super::generate::{generate, BatchRequest, Finish, SamplingParams};
use super::model::{BatchPositions, Llama};
use super::serve::{BaselineServer, ServeConfig};
use super::weights::Weights;
use super::{Baseline, ModelSpec};
use crate::test_support::fixtures_dir;

/// Logits agree with transformers to this absolute tolerance (f32 on the CPU; the logits
/// of the fixture span about ±3).
const LOGIT_ATOL: f32 = 1e-4;

fn golden_dir() -> PathBuf {
    fixtures_dir().join("baseline/tiny-llama")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("baseline/expected.json"))
        .expect("expected.json");
    serde_json::from_str(&text).expect("json")
}

fn golden_model() -> Llama {
    let shape = LlamaShape::from_dir(&golden_dir()).expect("config");
    let w = Weights::load(&golden_dir(), &shape, DType::F32, &Device::Cpu).expect("weights");
    Llama::new(shape, w, DType::F32, &Device::Cpu).expect("model")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("f") as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn greedy_batch(prompts: Vec<Vec<u32>>, n: usize) -> BatchRequest {
    let b = prompts.len();
    BatchRequest {
        prompts,
        max_new_tokens: vec![n; b],
        ignore_eos: vec![true; b],
        sampling: vec![SamplingParams::default(); b],
    }
}

/// The logits of one prompt's prefill (every position's when `all_logits`).
fn prefill(model: &Llama, prompt: &[u32], all_logits: bool) -> Tensor {
    let mut cache = model.new_cache(prompt.len()).expect("cache");
    let t = Tensor::new(prompt, &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("tokens");
    let pos = BatchPositions {
        pads: vec![0],
        offset: 0,
        len: prompt.len(),
    };
    model
        .forward(&t, &pos, &mut cache, all_logits)
        .expect("forward")
}

#[test]
fn golden_prefill_logits_match_transformers() {
    let model = golden_model();
    let exp = expected();
    let prompt = ids(&exp["prompts"][0]);
    let logits = prefill(&model, &prompt, true);
    let got: Vec<Vec<f32>> = logits.squeeze(0).expect("s").to_vec2().expect("v");
    let want = exp["prefill_logits"].as_array().expect("rows");
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(want) {
        worst = worst.max(max_abs_diff(g, &floats(w)));
    }
    assert!(worst < LOGIT_ATOL, "max |candle - transformers| = {worst}");
}

#[test]
fn golden_greedy_tokens_match_transformers_alone_and_left_padded() {
    let model = golden_model();
    let exp = expected();
    let n = exp["new_tokens"].as_u64().expect("n") as usize;
    let prompts: Vec<Vec<u32>> = exp["prompts"]
        .as_array()
        .expect("p")
        .iter()
        .map(ids)
        .collect();
    for (i, p) in prompts.iter().enumerate() {
        let out = generate(&model, &greedy_batch(vec![p.clone()], n), |_, _| true).expect("gen");
        assert_eq!(
            out.rows[0].tokens,
            ids(&exp["greedy"][i]),
            "prompt {i} alone"
        );
        assert_eq!(out.rows[0].finish, Finish::Length);
    }
    // One static batch, the shorter prompt left-padded: same tokens, and every step's
    // logits match transformers' `generate(output_logits=True)`.
    let mut step_logits = Vec::new();
    let model_ref = &model;
    let out = {
        let req = greedy_batch(prompts.clone(), n);
        // Re-run the steps by hand through the public forward to capture the logits.
        let width = prompts.iter().map(Vec::len).max().expect("w");
        let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
        let mut cache = model_ref.new_cache(width + n).expect("cache");
        let mut flat = Vec::new();
        for (p, &pad) in prompts.iter().zip(&pads) {
            flat.extend(std::iter::repeat_n(2u32, pad));
            flat.extend_from_slice(p);
        }
        let mut input = Tensor::from_vec(flat, (prompts.len(), width), &Device::Cpu).expect("t");
        let mut pos = BatchPositions {
            pads,
            offset: 0,
            len: width,
        };
        for _ in 0..n {
            let logits = model_ref
                .forward(&input, &pos, &mut cache, false)
                .expect("forward");
            let next: Vec<u32> = logits.argmax(1).expect("argmax").to_vec1().expect("v");
            step_logits.push(logits.to_vec2::<f32>().expect("v2"));
            pos.offset += pos.len;
            pos.len = 1;
            input = Tensor::from_vec(next, (prompts.len(), 1), &Device::Cpu).expect("t");
        }
        generate(model_ref, &req, |_, _| true).expect("gen")
    };
    for (i, row) in out.rows.iter().enumerate() {
        assert_eq!(
            row.tokens,
            ids(&exp["batched"][i]),
            "row {i} of the padded batch"
        );
        assert_eq!(
            row.tokens,
            ids(&exp["greedy"][i]),
            "padding changed row {i}"
        );
    }
    let want = exp["batched_step_logits"].as_array().expect("steps");
    let mut worst = 0f32;
    for (g, w) in step_logits.iter().zip(want) {
        for (gr, wr) in g.iter().zip(w.as_array().expect("rows")) {
            worst = worst.max(max_abs_diff(gr, &floats(wr)));
        }
    }
    assert!(
        worst < LOGIT_ATOL,
        "max |candle - transformers| over padded steps = {worst}"
    );
}

#[test]
fn kv_cache_bytes_equal_the_formula_and_times_are_ordered() {
    let model = golden_model();
    let shape = model.shape().clone();
    let arch = shape.arch(DType::F32);
    // 2 × 2 layers × 2 kv heads × 8 head_dim × 4 B = 256 B/token.
    assert_eq!(arch.bytes_per_token(), 256);
    let prompts = vec![vec![1, 5, 6], vec![1, 7, 8, 9, 10]];
    let out = generate(&model, &greedy_batch(prompts, 6), |_, _| true).expect("gen");
    assert_eq!(out.padded_len, 5);
    assert_eq!(out.kv_tokens_per_row, 5 + 6 - 1);
    assert_eq!(out.kv_bytes_allocated, arch.bytes_per_token() * 2 * 10);
    assert_eq!(out.decode_steps, 5);
    for r in &out.rows {
        assert_eq!(r.tokens.len(), 6);
        assert!(r.times.windows(2).all(|w| w[0] < w[1]));
        assert!(r.times[0] == out.t_prefill_done && out.t_start < out.t_prefill_done);
    }
}

#[test]
fn eos_stops_a_row_and_cancelling_stops_the_batch() {
    let model = golden_model();
    let exp = expected();
    let p = ids(&exp["prompts"][0]);
    let greedy = ids(&exp["greedy"][0]);
    // Make a later greedy token the "EOS" (one not produced before): the row stops just
    // before it, the other row (ignoring EOS) runs on.
    let k = (1..greedy.len())
        .find(|&k| !greedy[..k].contains(&greedy[k]))
        .expect("k");
    let mut shape = model.shape().clone();
    shape.eos_token_ids = vec![greedy[k]];
    let w = Weights::load(&golden_dir(), &shape, DType::F32, &Device::Cpu).expect("w");
    let eos_model = Llama::new(shape, w, DType::F32, &Device::Cpu).expect("model");
    let mut req = greedy_batch(vec![p.clone(), ids(&exp["prompts"][1])], 8);
    req.ignore_eos = vec![false, true];
    let out = generate(&eos_model, &req, |_, _| true).expect("gen");
    assert_eq!(out.rows[0].tokens, greedy[..k].to_vec());
    assert_eq!(out.rows[0].finish, Finish::Stop);
    assert_eq!(out.rows[1].tokens.len(), 8);
    let mut steps = 0;
    let out = generate(&model, &greedy_batch(vec![p], 8), |_, _| {
        steps += 1;
        steps < 3
    })
    .expect("gen");
    assert_eq!(out.rows[0].tokens.len(), 3);
    assert_eq!(out.rows[0].finish, Finish::Cancelled);
}

#[test]
fn sampling_is_seeded_per_row() {
    let model = golden_model();
    let p = vec![1u32, 17, 301];
    let mut req = greedy_batch(vec![p.clone(), p], 8);
    req.sampling = vec![
        SamplingParams {
            temperature: Some(1.0),
            top_p: None,
            seed: 7
        };
        2
    ];
    let a = generate(&model, &req, |_, _| true).expect("gen");
    let b = generate(&model, &req, |_, _| true).expect("gen");
    assert_eq!(a.rows[0].tokens, b.rows[0].tokens, "same seed, same tokens");
    assert_eq!(a.rows[0].tokens, a.rows[1].tokens, "same seed per row");
}

#[test]
fn loader_errors_are_clear() {
    let tmp = std::env::temp_dir().join(format!("llmbench-baseline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp");
    let spec = |m: &str| ModelSpec {
        model: m.into(),
        dtype: None,
        device: "cpu".into(),
        seed: 0,
        tokenizer: None,
    };
    let err = |m: &str| {
        Baseline::load(&spec(m))
            .err()
            .expect("an error")
            .to_string()
    };
    // No config.json.
    assert!(
        err(tmp.to_str().expect("p")).contains("config.json"),
        "{}",
        err(tmp.to_str().expect("p"))
    );
    // A config but no weights.
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(golden_dir().join("config.json")).expect("cfg"),
    )
    .expect("json");
    std::fs::write(tmp.join("config.json"), cfg.to_string()).expect("w");
    assert!(err(tmp.to_str().expect("p")).contains("no *.safetensors"));
    // Weights whose shapes disagree with the config.
    std::fs::copy(
        golden_dir().join("model.safetensors"),
        tmp.join("model.safetensors"),
    )
    .expect("cp");
    cfg["intermediate_size"] = json!(48);
    std::fs::write(tmp.join("config.json"), cfg.to_string()).expect("w");
    let e = err(tmp.to_str().expect("p"));
    assert!(
        e.contains("mlp.gate_proj.weight has shape [64, 32]") && e.contains("[48, 32]"),
        "{e}"
    );
    // Not a LLaMA.
    cfg["model_type"] = json!("gpt2");
    std::fs::write(tmp.join("config.json"), cfg.to_string()).expect("w");
    assert!(err(tmp.to_str().expect("p")).contains("model_type \"gpt2\" is not supported"));
    cfg["model_type"] = json!("llama");
    cfg["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0});
    std::fs::write(tmp.join("config.json"), cfg.to_string()).expect("w");
    assert!(err(tmp.to_str().expect("p")).contains("rope_scaling"));
    assert!(err("llama-9000").contains("unknown baseline preset"));
    assert!(err("/no/such/folder").contains("does not exist"));
    let mut s = spec("tiny");
    s.dtype = Some("int3".into());
    assert!(Baseline::load(&s)
        .err()
        .expect("e")
        .to_string()
        .contains("unknown dtype"));
    if !candle_core::utils::cuda_is_available() {
        s.dtype = None;
        s.device = "cuda".into();
        assert!(Baseline::load(&s)
            .err()
            .expect("e")
            .to_string()
            .contains("make build-cuda"));
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn tiny_preset_builds_and_reports_its_shape() {
    let spec = ModelSpec {
        model: "tiny".into(),
        dtype: None,
        device: "cpu".into(),
        seed: 3,
        tokenizer: None,
    };
    let b = Baseline::load(&spec).expect("tiny");
    let info = b.describe();
    assert_eq!(info["dtype"], "float32");
    // 2 × 4 layers × 4 kv heads × 32 head_dim × 4 B.
    assert_eq!(info["kv_bytes_per_token"], 4096);
    let ids = b.codec.encode("Hello there").expect("enc");
    let out = generate(&b.model, &greedy_batch(vec![ids], 4), |_, _| true).expect("gen");
    assert_eq!(out.rows[0].tokens.len(), 4);
    // The same seed gives the same weights, hence the same tokens.
    let again = Baseline::load(&spec).expect("tiny");
    let ids = again.codec.encode("Hello there").expect("enc");
    let out2 = generate(&again.model, &greedy_batch(vec![ids], 4), |_, _| true).expect("gen");
    assert_eq!(out.rows[0].tokens, out2.rows[0].tokens);
}

async fn post(url: &str, body: Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_stream_equals_in_process_tokens() {
    let model = golden_dir().display().to_string();
    let config = ServeConfig {
        model: ModelSpec {
            model: model.clone(),
            dtype: None,
            device: "cpu".into(),
            seed: 0,
            tokenizer: None,
        },
        max_batch: 4,
        batch_window_ms: 20.0,
        default_max_tokens: 16,
    };
    let server = BaselineServer::start(config, "127.0.0.1", 0)
        .await
        .expect("start");
    let exp = expected();
    let url = format!("{}/v1/completions", server.url());
    // Non-streaming: the token ids are the golden greedy ones.
    // Stream options only with `stream` (vLLM refuses them otherwise, and so does the
    // baseline: both servers read requests with `Protocol::served_request`).
    let body = |i: usize, stream: bool| {
        let mut b = json!({"model": model, "prompt": exp["prompts"][i], "max_tokens": 8,
                           "temperature": 0, "ignore_eos": true, "stream": stream});
        if stream {
            b["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
        }
        b
    };
    let (status, text) = post(&url, body(0, false)).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(ids(&v["llmbench_token_ids"]), ids(&exp["greedy"][0]));
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    let whole = v["choices"][0]["text"].as_str().expect("text").to_string();
    // Streaming, two requests batched together: each stream's text equals the decoded
    // in-process tokens, its usage counts every token, and it ends with [DONE].
    let (a, b) = tokio::join!(post(&url, body(0, true)), post(&url, body(1, true)));
    for (i, (status, text)) in [a, b].into_iter().enumerate() {
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let mut streamed = String::new();
        let mut last_usage = Value::Null;
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line == "[DONE]" {
                continue;
            }
            let ev: Value = serde_json::from_str(line).expect("event");
            if let Some(t) = ev["choices"].get(0).and_then(|c| c["text"].as_str()) {
                streamed.push_str(t);
            }
            if !ev["usage"].is_null() {
                last_usage = ev["usage"].clone();
            }
        }
        assert_eq!(last_usage["completion_tokens"], 8);
        if i == 0 {
            assert_eq!(streamed, whole);
        }
    }
    // Errors a client would see from vLLM.
    let (status, text) = post(&url, json!({"model": "other", "prompt": "x"})).await;
    assert_eq!(status, 404, "{text}");
    let (status, text) = post(
        &url,
        json!({"model": model, "prompt": "x", "max_tokens": 500}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("maximum context length is 128"), "{text}");
    // Chat works too.
    let (status, text) = post(
        &format!("{}/v1/chat/completions", server.url()),
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("chat.completion.chunk") && text.contains("\"role\":\"assistant\""));
    let m = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    assert!(m.contains("llmbench_baseline_served_total 4"), "{m}");
}

#[test]
fn weights_split_across_two_shards_load_to_the_same_model() {
    // The golden fixture's tensors written as two shards (as HuggingFace splits large
    // models): the model loads from both and computes the same logits.
    let dir = std::env::temp_dir().join(format!("llmbench-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::copy(golden_dir().join("config.json"), dir.join("config.json")).expect("config");
    let all = candle_core::safetensors::load(golden_dir().join("model.safetensors"), &Device::Cpu)
        .expect("load");
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    for (i, part) in [first, second].into_iter().enumerate() {
        let shard: std::collections::HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), all[*n].clone()))
            .collect();
        candle_core::safetensors::save(
            &shard,
            dir.join(format!("model-0000{}-of-00002.safetensors", i + 1)),
        )
        .expect("save");
    }
    let shape = LlamaShape::from_dir(&dir).expect("shape");
    let sharded = Llama::new(
        shape.clone(),
        Weights::load(&dir, &shape, DType::F32, &Device::Cpu).expect("two shards"),
        DType::F32,
        &Device::Cpu,
    )
    .expect("model");
    let whole = golden_model();
    let prompt = ids(&expected()["prompts"][0]);
    let logits = |m: &Llama| -> Vec<f32> {
        prefill(m, &prompt, false)
            .flatten_all()
            .and_then(|l| l.to_vec1())
            .expect("logits")
    };
    assert_eq!(logits(&sharded), logits(&whole));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_preset_has_its_published_shape() {
    // LLaMA-2 7B and 13B as published (parameters within 1% of 6.74 B and 13.0 B; KV
    // cache in FP16 512 KiB and 800 KiB per token), checked without allocating them.
    for (name, params, kv_fp16) in [
        ("llama-2-7b", 6.74e9, 512 * 1024),
        ("llama-2-13b", 13.02e9, 800 * 1024),
    ] {
        let shape = LlamaShape::preset(name).expect("preset");
        let p = shape.parameters() as f64;
        assert!((p / params - 1.0).abs() < 0.01, "{name}: {p}");
        assert_eq!(shape.arch(DType::F16).bytes_per_token(), kv_fp16, "{name}");
        assert_eq!(shape.max_position_embeddings, 4096, "{name}");
    }
    for name in super::config::PRESET_NAMES {
        assert!(LlamaShape::preset(name).is_ok(), "{name}");
    }
}
