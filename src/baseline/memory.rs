//! Whether a static batch's KV cache fits before it is allocated: the cache of `rows`
//! sequences of `tokens` each is `rows × tokens × bytes per token` (the formula of
//! docs/architecture.md, "Metrics"), all of it allocated at the start of the batch. A
//! request that cannot fit gets a clear error saying what was asked, what is free and the
//! largest batch that would fit, instead of the device's allocation error mid-run.

use std::sync::OnceLock;

use candle_core::{Device, DeviceLocation};

use super::model::Llama;
use crate::error::{Error, Result};

const GIB: f64 = (1u64 << 30) as f64;

/// Bytes free for new allocations on `device`: the host's available memory for the CPU,
/// the GPU's free memory through NVML for CUDA; `None` when it cannot be read.
pub fn free_bytes(device: &Device) -> Option<u64> {
    match device.location() {
        DeviceLocation::Cpu => host_available(),
        DeviceLocation::Cuda { gpu_id } => {
            // Opened once per process: the served baseline checks before every batch.
            static NVML: OnceLock<Option<nvml_wrapper::Nvml>> = OnceLock::new();
            let nvml = NVML
                .get_or_init(|| crate::telemetry::nvml::open().ok())
                .as_ref()?;
            let info = nvml
                .device_by_index(gpu_id as u32)
                .ok()?
                .memory_info()
                .ok()?;
            Some(info.free)
        }
        _ => None,
    }
}

/// `MemAvailable` of `/proc/meminfo` (Linux), in bytes.
fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Check that the KV cache of `rows` sequences of `tokens_per_row` tokens fits in `free`
/// bytes (when known).
pub fn check_kv_fits(
    bytes_per_token: u64,
    rows: usize,
    tokens_per_row: usize,
    free: Option<u64>,
    device: &str,
) -> Result<()> {
    let Some(free) = free else {
        return Ok(());
    };
    let per_row = bytes_per_token.saturating_mul(tokens_per_row as u64);
    let need = per_row.saturating_mul(rows as u64);
    if need <= free {
        return Ok(());
    }
    let fits = free / per_row.max(1);
    Err(Error::Model(format!(
        "a static batch of {rows} sequences of {tokens_per_row} tokens needs {:.1} GiB of KV \
         cache ({bytes_per_token} bytes per token), but {device} has {:.1} GiB free: the \
         largest batch whose cache fits is {fits} (weights and activations need room too)",
        need as f64 / GIB,
        free as f64 / GIB,
    )))
}

/// [`check_kv_fits`] for `model` on its own device.
pub fn check_model_kv_fits(model: &Llama, rows: usize, tokens_per_row: usize) -> Result<()> {
    let per_token = model.shape().arch(model.dtype()).bytes_per_token();
    let device = match model.device().location() {
        DeviceLocation::Cpu => "the host".to_string(),
        DeviceLocation::Cuda { gpu_id } => format!("GPU {gpu_id}"),
        other => format!("{other:?}"),
    };
    check_kv_fits(
        per_token,
        rows,
        tokens_per_row,
        free_bytes(model.device()),
        &device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_cannot_fit_says_what_was_asked_and_what_fits() {
        // LLaMA-2-7B in FP16: 512 KiB per token; 512 rows of 4,095 tokens = 1,023.8 GiB.
        let per_token = 512 * 1024;
        let free = 100 * (1u64 << 30);
        let msg = check_kv_fits(per_token, 512, 4095, Some(free), "GPU 0")
            .expect_err("too big")
            .to_string();
        assert!(msg.contains("512 sequences of 4095 tokens"), "{msg}");
        assert!(
            msg.contains("1023.8 GiB") && msg.contains("100.0 GiB free"),
            "{msg}"
        );
        // 100 GiB / (4,095 × 512 KiB) = 50.01…: 50 rows fit.
        assert!(
            msg.contains("largest batch whose cache fits is 50 "),
            "{msg}"
        );
        assert!(check_kv_fits(per_token, 50, 4095, Some(free), "GPU 0").is_ok());
        assert!(check_kv_fits(per_token, 51, 4095, Some(free), "GPU 0").is_err());
        assert!(check_kv_fits(per_token, 1 << 20, 4095, None, "GPU 0").is_ok());
    }

    #[test]
    fn the_host_reports_available_memory() {
        assert!(free_bytes(&Device::Cpu).is_some_and(|b| b > 0));
    }
}
